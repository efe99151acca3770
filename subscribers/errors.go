package subscribers

import (
	"errors"
	"net/http"
)

// Sentinel errors of the registry; callers branch on them with errors.Is.
// Validation errors are *alert.FieldError values (errors.Is(err,
// alert.ErrInvalid) matches them) and name the field at fault.
var (
	// ErrNotFound: no device or endpoint with that token or ID.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change would clash with what is stored, such as
	// rotating to a token that is already registered or registering a
	// second endpoint for the same URL.
	ErrConflict = errors.New("conflict")
)

// Code is the machine-readable code of an API error. Every error the API
// returns has one JSON shape, ErrorBody:
//
//	{"error":{"code":"invalid_field","field":"url","message":"..."}}
//
// where field is present only for invalid_field.
type Code string

// The error catalog: every code the API returns, with its HTTP status.
const (
	CodeInvalidField     Code = "invalid_field"      // 400: a field is missing, malformed or unknown; "field" names it
	CodeInvalidJSON      Code = "invalid_json"       // 400: the body is not one JSON object
	CodeUnauthenticated  Code = "unauthenticated"    // 401: no "Authorization: Bearer KEY", or an unknown key
	CodeForbidden        Code = "forbidden"          // 403: the key's role may not use this route
	CodeNotFound         Code = "not_found"          // 404: no such device, endpoint or route
	CodeMethodNotAllowed Code = "method_not_allowed" // 405: the route exists for other methods, listed in Allow
	CodeConflict         Code = "conflict"           // 409: the change clashes with what is stored
	CodeBodyTooLarge     Code = "body_too_large"     // 413: the body is over APIConfig.MaxBodyBytes
	CodeRateLimited      Code = "rate_limited"       // 429: the key is over its rate; retry after Retry-After seconds
	CodeInternal         Code = "internal"           // 500: a failure on our side; details are logged, never returned
)

// Status is the HTTP status a code is sent with.
func (c Code) Status() int {
	switch c {
	case CodeInvalidField, CodeInvalidJSON:
		return http.StatusBadRequest
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict:
		return http.StatusConflict
	case CodeBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// APIError says what went wrong with a request.
type APIError struct {
	Code    Code   `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}
