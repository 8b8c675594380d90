package store

import (
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// SetOpenConn makes Open open its connection pools with open (which may wrap
// clickhouse.Open's connections) until the returned restore is called.
func SetOpenConn(open func(*clickhouse.Options) (driver.Conn, error)) (restore func()) {
	prev := openConn
	openConn = open
	return func() { openConn = prev }
}

// ColumnAdded is columnAdded, for the migration test.
var ColumnAdded = columnAdded
