// Package anonymize holds the per-hit privacy transforms of the ingest hot
// path: IP truncation, the cookieless daily visitor id, URL and referrer
// scrubbing, and the per-platform normalisation and SHA-256 hashing of
// e-mail addresses.
//
// It is a pure package: it imports only the standard library, does no I/O
// and keeps no state. Functions take their input as []byte and, where they
// produce bytes, append to a caller-provided dst and return the extended
// slice (the append convention: they allocate only when dst lacks capacity).
// None of them retains its arguments. Tests prove zero allocations with
// testing.AllocsPerRun, and every parser of untrusted input has a fuzz test.
package anonymize
