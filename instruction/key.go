package instruction

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrNoKey is returned when credentials must be sealed or opened but the
// deployment has no secrets key.
var ErrNoKey = errors.New("this deployment has no secrets key (-secrets.key / JOBPIXEL_SECRETS_KEY): instructions carrying credentials cannot be stored or used")

// Key seals credentials with AES-256-GCM. A nil *Key has no key: Seal and
// Open return ErrNoKey.
type Key struct {
	aead cipher.AEAD
	id   string
}

// ParseKey decodes a base64 (standard or URL alphabet, padded or not)
// 32-byte key. An empty string gives a nil Key and no error.
func ParseKey(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("secrets key: not base64")
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("secrets key: want 32 bytes (base64 of 32 random bytes, e.g. `openssl rand -base64 32`), got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("jobpixel secrets key id\x00"), raw...))
	return &Key{aead: aead, id: hex.EncodeToString(sum[:8])}, nil
}

// ID identifies the key without revealing it (stored next to the sealed
// credentials, so a wrong key is reported as such).
func (k *Key) ID() string {
	if k == nil {
		return ""
	}
	return k.id
}

// AAD returns the additional data binding sealed credentials to one
// instruction version: a sealed blob copied to another row does not open.
func AAD(clientID, campaignID string, version uint32) string {
	return fmt.Sprintf("jobpixel/instruction/v1|%s|%s|%d", clientID, campaignID, version)
}

// Seal encrypts c: base64(nonce || ciphertext). Empty credentials seal to "".
func (k *Key) Seal(c Credentials, aad string) (string, error) {
	if c.IsZero() {
		return "", nil
	}
	if k == nil {
		return "", ErrNoKey
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := k.aead.Seal(nonce, nonce, plain, []byte(aad))
	return base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts what Seal returned for the same aad.
func (k *Key) Open(sealed, keyID, aad string) (Credentials, error) {
	var c Credentials
	if sealed == "" {
		return c, nil
	}
	if k == nil {
		return c, ErrNoKey
	}
	if keyID != "" && keyID != k.id {
		return c, fmt.Errorf("credentials were sealed with another secrets key (id %s, this deployment's key is %s)", keyID, k.id)
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < k.aead.NonceSize() {
		return c, errors.New("sealed credentials are malformed")
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
	if err != nil {
		return c, errors.New("sealed credentials do not open with this key and instruction")
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, fmt.Errorf("sealed credentials: %w", err)
	}
	return c, nil
}
