package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Instruction is one immutable version of a client's forwarding
// instruction for a campaign. Spec is the instruction without credentials
// (JSON, see instruction); Secrets the credentials sealed with the
// deployment key KeyID. A revocation is a version with Revoked set and an
// empty Spec.
type Instruction struct {
	ClientID    string
	CampaignID  string
	Version     uint32
	ID          string
	CreatedAt   time.Time
	Actor       string // who: "client:<id>" for the client API
	RequestedBy string // the person named in the request, free text
	Revoked     bool
	Spec        string
	Secrets     string
	KeyID       string
}

// ErrConflict is returned when a concurrent change took the version a
// write wanted; the caller may retry.
var ErrConflict = errors.New("conflict: the instruction was changed concurrently, retry")

// instructionMu serialises version allocation within this process; the
// conflict check in AddInstruction covers several API replicas.
var instructionMu sync.Mutex

type instructionRow struct {
	ClientID    string    `ch:"client_id"`
	CampaignID  string    `ch:"campaign_id"`
	Version     uint32    `ch:"version"`
	ID          string    `ch:"id"`
	CreatedAt   time.Time `ch:"created_at"`
	Actor       string    `ch:"actor"`
	RequestedBy string    `ch:"requested_by"`
	Revoked     uint8     `ch:"revoked"`
	Spec        string    `ch:"spec"`
	Secrets     string    `ch:"secrets"`
	KeyID       string    `ch:"key_id"`
}

func (r instructionRow) instruction() Instruction {
	return Instruction{ClientID: r.ClientID, CampaignID: r.CampaignID, Version: r.Version, ID: r.ID,
		CreatedAt: r.CreatedAt.UTC(), Actor: r.Actor, RequestedBy: r.RequestedBy, Revoked: r.Revoked == 1,
		Spec: r.Spec, Secrets: r.Secrets, KeyID: r.KeyID}
}

const instructionCols = `client_id, campaign_id, version, id, created_at, actor, requested_by, revoked, spec, secrets, key_id`

// AddInstruction stores a new version of a campaign's instruction: the
// version after the latest one. seal is called with that version and
// returns the sealed credentials (bound to the version). Version, ID and
// CreatedAt of in are set here. If another writer took the same version
// concurrently, the row of the later id is withdrawn and ErrConflict
// returned.
func (s *Store) AddInstruction(ctx context.Context, in Instruction, seal func(version uint32) (string, error)) (Instruction, error) {
	instructionMu.Lock()
	defer instructionMu.Unlock()
	var mx []struct {
		V uint32 `ch:"v"`
	}
	if err := s.conn.Select(ctx, &mx, `SELECT max(version) AS v FROM forward_instructions WHERE campaign_id = ?`, in.CampaignID); err != nil {
		return in, fmt.Errorf("store: instruction version: %w", err)
	}
	in.Version = 1
	if len(mx) == 1 {
		in.Version = mx[0].V + 1
	}
	in.ID = newID("ins_")
	in.CreatedAt = time.Now().UTC().Truncate(time.Second)
	if seal != nil {
		sealed, err := seal(in.Version)
		if err != nil {
			return in, err
		}
		in.Secrets = sealed
	}
	revoked := uint8(0)
	if in.Revoked {
		revoked = 1
	}
	err := s.insertOne(ctx, "INSERT INTO forward_instructions ("+instructionCols+")",
		in.ClientID, in.CampaignID, in.Version, in.ID, in.CreatedAt, in.Actor, in.RequestedBy, revoked, in.Spec, in.Secrets, in.KeyID)
	if err != nil {
		return in, fmt.Errorf("store: add instruction: %w", err)
	}
	var ids []struct {
		ID string `ch:"id"`
	}
	if err := s.conn.Select(ctx, &ids, `SELECT id FROM forward_instructions WHERE campaign_id = ? AND version = ? ORDER BY id`, in.CampaignID, in.Version); err != nil {
		return in, fmt.Errorf("store: add instruction: check: %w", err)
	}
	if len(ids) > 1 && ids[0].ID != in.ID {
		if err := s.deleteWhere(ctx, "forward_instructions", "id = ?", in.ID); err != nil {
			return in, fmt.Errorf("store: add instruction: withdraw conflicting version: %w", err)
		}
		return in, ErrConflict
	}
	return in, nil
}

// Instructions returns every version of a client's campaign instruction,
// oldest first.
func (s *Store) Instructions(ctx context.Context, clientID, campaignID string) ([]Instruction, error) {
	var rows []instructionRow
	err := s.conn.Select(ctx, &rows, `SELECT `+instructionCols+` FROM forward_instructions
		WHERE campaign_id = ? AND client_id = ? ORDER BY version, id LIMIT 1 BY version`, campaignID, clientID)
	if err != nil {
		return nil, fmt.Errorf("store: instructions of %s: %w", campaignID, err)
	}
	out := make([]Instruction, len(rows))
	for i, r := range rows {
		out[i] = r.instruction()
	}
	return out, nil
}

// InstructionVersion returns one version of a campaign's instruction.
func (s *Store) InstructionVersion(ctx context.Context, campaignID string, version uint32) (Instruction, error) {
	var rows []instructionRow
	err := s.conn.Select(ctx, &rows, `SELECT `+instructionCols+` FROM forward_instructions
		WHERE campaign_id = ? AND version = ? ORDER BY id LIMIT 1`, campaignID, version)
	if err != nil {
		return Instruction{}, fmt.Errorf("store: instruction %s v%d: %w", campaignID, version, err)
	}
	if len(rows) != 1 {
		return Instruction{}, ErrNotFound
	}
	return rows[0].instruction(), nil
}

// CurrentInstruction is the latest version of a campaign's instruction and
// the latest revocation before or at it.
type CurrentInstruction struct {
	Instruction
	// LastRevoked is the highest revoked version (0 if never revoked). Data
	// collected under versions up to it no longer counts.
	LastRevoked uint32
}

// CurrentInstructions returns the latest instruction version of every
// campaign that has one (revoked or not).
func (s *Store) CurrentInstructions(ctx context.Context) ([]CurrentInstruction, error) {
	var rows []instructionRow
	err := s.conn.Select(ctx, &rows, `SELECT `+instructionCols+` FROM forward_instructions
		WHERE (campaign_id, version) IN (SELECT campaign_id, max(version) FROM forward_instructions GROUP BY campaign_id)
		ORDER BY campaign_id, id LIMIT 1 BY campaign_id`)
	if err != nil {
		return nil, fmt.Errorf("store: current instructions: %w", err)
	}
	var rev []struct {
		CampaignID string `ch:"campaign_id"`
		V          uint32 `ch:"v"`
	}
	if err := s.conn.Select(ctx, &rev, `SELECT campaign_id, max(version) AS v FROM forward_instructions WHERE revoked = 1 GROUP BY campaign_id`); err != nil {
		return nil, fmt.Errorf("store: current instructions: revocations: %w", err)
	}
	last := make(map[string]uint32, len(rev))
	for _, r := range rev {
		last[r.CampaignID] = r.V
	}
	out := make([]CurrentInstruction, len(rows))
	for i, r := range rows {
		out[i] = CurrentInstruction{Instruction: r.instruction(), LastRevoked: last[r.CampaignID]}
	}
	return out, nil
}
