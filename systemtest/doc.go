// Package systemtest holds the tests that start the whole system in one
// process through package app (every role against real ClickHouse, an
// in-process Kafka broker and the strict platform fakes), a headless
// Chromium where a test needs the tracker or the dashboard, and the test of
// the module's floor plan (layout_test.go). It has no code of its own; the
// fault-injection tests with child processes are in systemtest/faulttest.
package systemtest
