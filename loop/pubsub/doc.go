// Package pubsub holds Tornago's publish/subscribe data and brokers, with no
// I/O of its own and no dependency on the reactor (loop) or gnet, so that a
// broker (loop/natsbroker, or one an application writes for Redis) depends
// on this package alone.
//
// The parts:
//
//   - Broker carries a topic's messages between hubs (several loops in one
//     process, or several processes); HistoryBroker also orders a topic's
//     messages and keeps a bounded history of them, so that a subscriber
//     that comes back resumes where it stopped.
//   - Position names one message of a topic's history ("E-N": epoch,
//     offset), Message is a positioned message, HistoryOptions bounds what
//     a topic keeps and HistoryBuffer keeps it (for a broker, or for a hub
//     without one).
//   - MemoryBroker is a HistoryBroker inside one process; LocalHistory
//     adds history, kept in this process, to a Broker that has none.
//
// The Hub that fans a topic out to WebSockets and event streams lives in
// package loop (loop.NewHub); it calls a broker's methods only off its loop
// (see Broker), since a broker may block on its network.
package pubsub
