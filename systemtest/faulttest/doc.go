// Package faulttest holds jobpixel's fault-injection integration tests:
// the real binary runs as child processes (broker, ingest, pipeline) against
// real ClickHouse, the tests kill and restart them (kill -9, SIGTERM), stop
// ClickHouse, write duplicate Kafka messages, and assert that the campaign
// report counts exactly the hits ingest accepted — nothing lost, nothing
// counted twice.
//
// The package has no non-test code. The tests are skipped with -short.
package faulttest
