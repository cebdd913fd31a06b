package natsbroker_test

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/tornago/tornago/loop/natsbroker"
	"github.com/tornago/tornago/loop/pubsub"
)

// BenchmarkHistoryPublish measures a history topic's publication through
// an embedded nats-server, end to end: each op is one publication, the
// clock stops once this process's replica delivered all of them (Publish)
// or every done got its position (PublishAck, which also waits for the
// deliveries). 100-byte messages.
func BenchmarkHistoryPublish(b *testing.B) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats-server not ready")
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := natsbroker.NewWithOptions(nc, "bench.", natsbroker.Options{Logger: slog.New(slog.DiscardHandler)})
	defer br.Close()
	if err := br.KeepHistory("t", pubsub.HistoryOptions{MaxMessages: 1 << 20}); err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	_, cancel, err := br.SubscribeHistory("t", func(pubsub.Message) { delivered.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()
	data := make([]byte, 100)
	run := func(b *testing.B, publish func() error, done func() int64) {
		start := delivered.Load()
		b.ResetTimer()
		for i := 0; i < b.N; {
			err := publish()
			if errors.Is(err, natsbroker.ErrBacklog) {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
		for deadline := time.Now().Add(30 * time.Second); delivered.Load()-start < int64(b.N) || done() < int64(b.N); time.Sleep(50 * time.Microsecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d delivered, %d done", delivered.Load()-start, b.N, done())
			}
		}
	}
	b.Run("Publish", func(b *testing.B) {
		run(b, func() error { return br.Publish("t", data) }, func() int64 { return int64(b.N) })
	})
	b.Run("PublishAck", func(b *testing.B) {
		var acked atomic.Int64
		ack := func(_ pubsub.Position, err error) {
			if err == nil {
				acked.Add(1)
			}
		}
		run(b, func() error { return br.PublishAck("t", data, "", ack) }, acked.Load)
	})
}
