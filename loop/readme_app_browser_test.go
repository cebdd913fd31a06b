package loop_test

import "testing"

// readmeAppBrowser: see TestReadmeApp.
func readmeAppBrowser(t *testing.T, base string, ann *appConn) {}
