package fcmtest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ErrorCode is an FCM v1 error code the server can be told to answer with.
// Each is answered with the HTTP status, google.rpc status, message and
// FcmError detail that FCM itself sends, so that the SDK's messaging.IsXxx
// functions classify it.
type ErrorCode string

const (
	// Unregistered: the app was uninstalled or the token expired (404).
	Unregistered ErrorCode = "UNREGISTERED"
	// InvalidArgument: the token is not a valid FCM registration token (400).
	InvalidArgument ErrorCode = "INVALID_ARGUMENT"
	// QuotaExceeded: the project's send quota is used up (429, with
	// Retry-After when SetRetryAfter is positive).
	QuotaExceeded ErrorCode = "QUOTA_EXCEEDED"
	// Unavailable: FCM is overloaded (503, with Retry-After when
	// SetRetryAfter is positive). The SDK retries it on its own.
	Unavailable ErrorCode = "UNAVAILABLE"
	// Internal: FCM failed (500).
	Internal ErrorCode = "INTERNAL"
	// SenderIDMismatch: the token belongs to another Firebase project (403).
	SenderIDMismatch ErrorCode = "SENDER_ID_MISMATCH"
	// ThirdPartyAuthError: APNs or web push rejected the project's
	// certificate or key (401).
	ThirdPartyAuthError ErrorCode = "THIRD_PARTY_AUTH_ERROR"
	// Unauthenticated is not an FcmError code: it is what Google's front
	// end answers (401, no FcmError detail) when the sender's OAuth token
	// is missing, expired or revoked.
	Unauthenticated ErrorCode = "UNAUTHENTICATED"
)

// answer is one error reply as FCM writes it.
type answer struct {
	status  int    // HTTP status
	rpc     string // google.rpc.Code name, the "status" field
	message string
	fcm     bool // carries an FcmError detail with the code
}

// answerFor returns FCM's reply to code, with the message it sends today.
func answerFor(code ErrorCode) (answer, bool) {
	switch code {
	case Unregistered:
		return answer{http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", true}, true
	case InvalidArgument:
		return answer{http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", true}, true
	case QuotaExceeded:
		return answer{http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests' " +
			"and limit 'Send requests per minute' of service 'fcm.googleapis.com'.", true}, true
	case Unavailable:
		return answer{http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable.", true}, true
	case Internal:
		return answer{http.StatusInternalServerError, "INTERNAL", "Internal error encountered.", true}, true
	case SenderIDMismatch:
		return answer{http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch", true}, true
	case ThirdPartyAuthError:
		return answer{http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", true}, true
	case Unauthenticated:
		return answer{http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials. " +
			"Expected OAuth 2 access token, login cookie or other valid authentication credential. " +
			"See https://developers.google.com/identity/sign-in/web/devconsole-project.", false}, true
	}
	return answer{}, false
}

// Known reports whether the server can answer with code.
func (c ErrorCode) Known() bool { _, ok := answerFor(c); return ok }

// errorBody is the google.rpc.Status JSON that Google APIs answer with.
type errorBody struct {
	Error struct {
		Code    int      `json:"code"`
		Message string   `json:"message"`
		Status  string   `json:"status"`
		Details []detail `json:"details,omitempty"`
	} `json:"error"`
}

type detail struct {
	Type            string           `json:"@type"`
	ErrorCode       string           `json:"errorCode,omitempty"`
	FieldViolations []fieldViolation `json:"fieldViolations,omitempty"`
}

type fieldViolation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

const (
	fcmErrorType   = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	badRequestType = "type.googleapis.com/google.rpc.BadRequest"
)

// writeError answers with code as FCM does; retryAfter, when positive,
// is sent as a Retry-After header in whole seconds, rounded up.
func writeError(w http.ResponseWriter, code ErrorCode, retryAfter time.Duration) {
	a, _ := answerFor(code)
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Status = a.status, a.message, a.rpc
	if a.fcm {
		b.Error.Details = []detail{{Type: fcmErrorType, ErrorCode: string(code)}}
	}
	if retryAfter > 0 && (code == QuotaExceeded || code == Unavailable) {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSON(w, a.status, b)
}

// writeInvalid answers a payload FCM would refuse, naming the field the way
// Google APIs do in a google.rpc.BadRequest detail.
func writeInvalid(w http.ResponseWriter, field, description string) {
	var b errorBody
	b.Error.Code, b.Error.Status = http.StatusBadRequest, "INVALID_ARGUMENT"
	b.Error.Message = "Request contains an invalid argument."
	b.Error.Details = []detail{
		{Type: fcmErrorType, ErrorCode: string(InvalidArgument)},
		{Type: badRequestType, FieldViolations: []fieldViolation{{Field: field, Description: description}}},
	}
	writeJSON(w, http.StatusBadRequest, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
