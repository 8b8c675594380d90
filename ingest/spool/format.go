package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk format.
//
// A segment file is named by its sequence number, 20 decimal digits and
// ".seg", so that lexical order is append order. It starts with the 8-byte
// magic segMagic, followed by records:
//
//	uint32 little-endian  n: payload length, 1 ≤ n ≤ MaxRecord
//	uint32 little-endian  CRC-32C (Castagnoli) of the 4 length bytes and the payload
//	n bytes               payload
//
// The CRC covers the length, so a damaged length is detected like a damaged
// payload. Nothing else is in a segment: a reader that finds fewer bytes than
// a record needs at the end of a finished segment has found a torn tail (the
// process died in the middle of a write); a CRC mismatch or an impossible
// length is corruption. Either way the rest of that segment is reported and
// skipped; the following segments are unaffected.
//
// The ack file holds how far the spool has been consumed:
//
//	8 bytes  ackMagic
//	uint64   segment sequence number
//	uint64   byte offset in that segment of the first unconsumed record
//	uint32   CRC-32C of the preceding 24 bytes
//
// It is replaced atomically (write to ack.tmp, rename). A missing or damaged
// ack file means "nothing consumed": records are replayed again, which the
// consumers' event-id deduplication absorbs.
const (
	segMagic   = "JPSPOOL1"
	ackMagic   = "JPSACK01"
	headerLen  = 8 // record header: length + CRC
	ackLen     = 8 + 8 + 8 + 4
	segSuffix  = ".seg"
	ackName    = "ack"
	ackTmpName = "ack.tmp"

	// MaxRecord is the largest payload a record may have.
	MaxRecord = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of decodeRecord.
var (
	errShort   = errors.New("record truncated")
	errLength  = errors.New("impossible record length")
	errCRC     = errors.New("record checksum mismatch")
	errMagic   = errors.New("bad segment header")
	errAckFile = errors.New("damaged ack file")
)

// appendRecord appends the encoding of payload to dst.
func appendRecord(dst, payload []byte) []byte {
	var h [headerLen]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, h[0:4])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// recordLen returns the encoded size of a payload of n bytes.
func recordLen(n int) int64 { return int64(headerLen + n) }

// decodeRecord decodes the record at the start of b. It returns the payload
// (a sub-slice of b) and the record's encoded length. errShort means b ends
// before the record does; need is then the record's full encoded length when
// the header was readable (0 otherwise), so a caller can read that much.
func decodeRecord(b []byte) (payload []byte, n int, need int, err error) {
	if len(b) < headerLen {
		return nil, 0, 0, errShort
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	if size == 0 || size > MaxRecord {
		return nil, 0, 0, fmt.Errorf("%w: %d", errLength, size)
	}
	total := headerLen + int(size)
	if len(b) < total {
		return nil, 0, total, errShort
	}
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, b[headerLen:total])
	if crc != binary.LittleEndian.Uint32(b[4:8]) {
		return nil, 0, 0, errCRC
	}
	return b[headerLen:total], total, total, nil
}

// position is a place in the spool: a segment and a byte offset in it.
type position struct {
	seg uint64
	off int64
}

func encodeAck(p position) []byte {
	b := make([]byte, 0, ackLen)
	b = append(b, ackMagic...)
	b = binary.LittleEndian.AppendUint64(b, p.seg)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.off))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeAck(b []byte) (position, error) {
	if len(b) != ackLen || string(b[:8]) != ackMagic {
		return position{}, errAckFile
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:28]) {
		return position{}, errAckFile
	}
	off := binary.LittleEndian.Uint64(b[16:24])
	if off > 1<<62 {
		return position{}, errAckFile
	}
	return position{seg: binary.LittleEndian.Uint64(b[8:16]), off: int64(off)}, nil
}

func segName(id uint64) string { return fmt.Sprintf("%020d%s", id, segSuffix) }

// parseSegName returns the sequence number of a segment file name.
func parseSegName(name string) (uint64, bool) {
	if len(name) != 20+len(segSuffix) || name[20:] != segSuffix {
		return 0, false
	}
	var id uint64
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if id > (1<<64-1-d)/10 {
			return 0, false
		}
		id = id*10 + d
	}
	return id, true
}
