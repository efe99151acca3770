package alert

import "time"

// Status is the progress of one alert's fan-out, as the dispatcher reports
// it on StatusSubject and answers on StatusQuerySubject.
type Status struct {
	ID          string    `json:"id"`
	Kind        Kind      `json:"kind,omitempty"`
	State       string    `json:"state"`                  // planning, planned, done, suppressed, expired, rejected
	DuplicateOf string    `json:"duplicate_of,omitempty"` // for suppressed: the alert that carried the story
	Reason      string    `json:"reason,omitempty"`
	Items       int       `json:"items"`      // work items planned
	ItemsDone   int       `json:"items_done"` // work items finished
	Devices     int64     `json:"devices"`    // device tokens planned
	Sent        int64     `json:"sent"`       // pushes FCM accepted
	Failed      int64     `json:"failed"`     // pushes given up on
	Pruned      int64     `json:"pruned"`     // dead tokens removed from the registry
	Webhooks    int64     `json:"webhooks"`   // webhook deliveries planned
	Delivered   int64     `json:"delivered"`  // webhook deliveries that got a 2xx
	CreatedAt   time.Time `json:"created_at,omitzero"`
	DoneAt      time.Time `json:"done_at,omitzero"`
}

// Final reports whether the status will not change any more.
func (s Status) Final() bool {
	switch s.State {
	case "done", "suppressed", "expired", "rejected":
		return true
	}
	return false
}

// StatusSubjectPrefix is the stem of the per-alert progress subjects.
const StatusSubjectPrefix = "ajil.status."

// StatusSubject is where progress events for alert id are published.
func StatusSubject(id string) string { return StatusSubjectPrefix + id }

// StatusQuerySubject answers a request holding an alert ID with its Status.
const StatusQuerySubject = "ajil.status-query"

// StatusReply is the answer on StatusQuerySubject: a status, or why there
// is none.
type StatusReply struct {
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// StatusUnknown is StatusReply.Error for an alert no dispatcher has seen.
const StatusUnknown = "unknown alert"
