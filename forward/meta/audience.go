package meta

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/jobpixel/jobpixel/forward"
)

// Schema columns used for audience uploads, in this order when present.
const (
	ColumnEmail      = "EMAIL"
	ColumnPhone      = "PHONE"
	ColumnExternalID = "EXTERN_ID"
)

type session struct {
	SessionID         int64 `json:"session_id"`
	BatchSeq          int   `json:"batch_seq"`
	LastBatchFlag     bool  `json:"last_batch_flag"`
	EstimatedNumTotal int   `json:"estimated_num_total"`
}

type payload struct {
	Schema []string   `json:"schema"`
	Data   [][]string `json:"data"`
}

type usersRequest struct {
	Session session `json:"session"`
	Payload payload `json:"payload"`
}

type usersResponse struct {
	NumReceived       *int `json:"num_received"`
	NumInvalidEntries int  `json:"num_invalid_entries"`
}

// AddMembers adds members to the custom audience dest.ID (POST
// /{version}/{audience}/users).
//
// The upload is one session: a positive 64-bit session_id chosen once per
// call (and reused by every retry), batch_seq 1..n over requests of at most
// MaxRows rows, last_batch_flag on the last, estimated_num_total = number
// of rows. The schema is a multi-key list of the columns any member has:
// EMAIL (Identity.Email), PHONE (Identity.Phone), EXTERN_ID (unhashed
// Member.ExternalID); a member lacking a column sends "". A member with none
// of them, or with an identifier that is not hashed, is refused locally.
// Batches are sent in order and a failed batch ends the session: the
// remaining batches are reported failed without being sent.
//
// If Meta reports num_invalid_entries > 0 the batch is still counted as
// sent: Meta does not say which rows were invalid.
func (c *Client) AddMembers(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	return c.users(ctx, http.MethodPost, dest, members)
}

// RemoveMembers removes members from the custom audience dest.ID (DELETE on
// the same path with the same body); see AddMembers.
func (c *Client) RemoveMembers(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	return c.users(ctx, http.MethodDelete, dest, members)
}

func (c *Client) users(ctx context.Context, method string, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	if err := checkDest(dest, "audience"); err != nil {
		res := forward.RejectAll(len(members), func(i int) string { return members[i].ID }, err)
		return res, res.Err()
	}
	var hasEmail, hasPhone, hasExt bool
	for _, m := range members {
		hasEmail = hasEmail || m.User.Email != ""
		hasPhone = hasPhone || m.User.Phone != ""
		hasExt = hasExt || m.ExternalID != ""
	}
	var schema []string
	if hasEmail {
		schema = append(schema, ColumnEmail)
	}
	if hasPhone {
		schema = append(schema, ColumnPhone)
	}
	if hasExt {
		schema = append(schema, ColumnExternalID)
	}
	row := func(m forward.Member) []string {
		r := make([]string, 0, len(schema))
		for _, col := range schema {
			switch col {
			case ColumnEmail:
				r = append(r, m.User.Email)
			case ColumnPhone:
				r = append(r, m.User.Phone)
			case ColumnExternalID:
				r = append(r, m.ExternalID)
			}
		}
		return r
	}
	endpoint := c.endpoint(dest.ID, "users", dest.Token)
	timeout := c.AudienceTimeout
	if timeout == 0 {
		timeout = DefaultAudienceTimeout
	}
	sessionID := c.newSessionID()
	b := forward.Batcher[forward.Member]{
		Size:        MaxRows,
		Retry:       c.Retry,
		StopOnError: true,
		ID:          func(m forward.Member) string { return m.ID },
		Check: func(m forward.Member) error {
			if m.User.Email == "" && m.User.Phone == "" && m.ExternalID == "" {
				return forward.Rejectf("meta: member has no e-mail, phone or external id")
			}
			return m.User.Check()
		},
		Send: func(ctx context.Context, bt forward.Batch, items []forward.Member) (forward.Outcome, error) {
			req := usersRequest{
				Session: session{SessionID: sessionID, BatchSeq: bt.Seq, LastBatchFlag: bt.Last(), EstimatedNumTotal: bt.Total},
				Payload: payload{Schema: schema, Data: make([][]string, len(items))},
			}
			for i, m := range items {
				req.Payload.Data[i] = row(m)
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "meta: encode audience rows", Err: err}
			}
			resp, err := c.send(ctx, method, endpoint, body, timeout)
			if err != nil {
				return forward.Outcome{}, err
			}
			var out usersResponse
			if err := json.Unmarshal(resp.Body, &out); err != nil || out.NumReceived == nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Status: resp.Status,
					Reason: "meta: response has no num_received: " + snippet(resp.Body)}
			}
			if *out.NumReceived != len(items) {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Status: resp.Status,
					Reason: "meta: num_received does not match the number of rows sent"}
			}
			return forward.Outcome{Status: resp.Status}, nil
		},
	}
	res := b.Run(ctx, members)
	return res, res.Err()
}
