package realtime

import (
	"testing"

	"github.com/tornago/tornago/internal/notrun"
)

// TestMain ends the run with one NOT RUN line naming the tests skipped for
// a missing outside tool.
func TestMain(m *testing.M) { notrun.Main(m) }
