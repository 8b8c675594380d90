package store

// Channels a hit can come from, as stored in events.channel by the pipeline
// (pipeline.Channel states the rules) and named by the channel breakdown and
// filter. Rows stored before the column existed have an empty channel,
// reported as ChannelUnknown.
const (
	ChannelPaidGoogle    = "paid_google"
	ChannelPaidMeta      = "paid_meta"
	ChannelPaidLinkedIn  = "paid_linkedin"
	ChannelPaidOther     = "paid_other"
	ChannelOrganicSearch = "organic_search"
	ChannelSocial        = "social"
	ChannelEmail         = "email"
	ChannelJobBoard      = "job_board"
	ChannelReferral      = "referral"
	ChannelInternal      = "internal"
	ChannelDirect        = "direct"
	ChannelUnknown       = "(unknown)"
)

// Channels lists every channel a report can show, ChannelUnknown last.
var Channels = []string{ChannelPaidGoogle, ChannelPaidMeta, ChannelPaidLinkedIn, ChannelPaidOther,
	ChannelOrganicSearch, ChannelSocial, ChannelEmail, ChannelJobBoard, ChannelReferral,
	ChannelInternal, ChannelDirect, ChannelUnknown}
