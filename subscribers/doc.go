// Package subscribers is Ajil's subscriber registry, in Redis: the devices
// that receive pushes, indexed by topic and language for the fan-out, and
// the partner webhook endpoints; and the HTTP API that manages them.
//
// # Devices and audiences
//
// A Device is an FCM token with a platform, a language, topics and a
// region. Each (topic, language) pair is an audience index: a sorted set
// whose scores are a registry-wide sequence number, given to a token when
// it joins the index. The dispatcher walks an index with Page and a Cursor
// (the last score seen), one page of at most MaxPage tokens at a time, and
// checkpoints the cursor between pages. Indexes are keyed by the primary
// language subtag (IndexLang): an "ar-EG" device is in the "ar" indexes.
//
// Every change to a device is one Lua script, so a device is in exactly
// the indexes its stored state names, even under concurrent updates.
// Devices not seen for Config.DeviceTTL are removed by Expire.
//
// # Endpoints
//
// An Endpoint is a partner's webhook URL with a Standard Webhooks secret
// ("whsec_" and base64 of 32 random bytes), filters on alert kind, topic
// and language, and a state (enabled, or disabled with a reason).
// RotateSecret keeps the previous secret signing for Config.SecretGrace.
// URLs must be https, without credentials, and their host not local or
// private, unless Config says otherwise for development; the check is the
// webhook channel's own (webhook.CheckURL), which also guards at dial time.
//
// # HTTP API
//
// Every request carries "Authorization: Bearer KEY"; a key has a role
// (Keys, ParseKeys, LoadKeys). Admin keys may use every route.
//
//	PUT    /v1/devices/{token}                 app      register or update: {"platform","lang","topics","region"}; 201 new, 200 updated
//	DELETE /v1/devices/{token}                 app      unregister; 204
//	GET    /v1/audience?topic=T&lang=L         app, editor  {"topic","lang","count"}
//	POST   /v1/endpoints                       partner-admin  {"url","description","kinds","topics","langs"}; 201, the secret shown this once
//	GET    /v1/endpoints                       partner-admin  {"endpoints":[...]}, never secrets
//	GET    /v1/endpoints/{id}                  partner-admin
//	PATCH  /v1/endpoints/{id}                  partner-admin  only the members sent change; null clears
//	DELETE /v1/endpoints/{id}                  partner-admin  204
//	POST   /v1/endpoints/{id}/rotate-secret    partner-admin  the new secret, shown this once
//	POST   /v1/endpoints/{id}/enable           partner-admin
//
// Bodies are JSON objects of at most APIConfig.MaxBodyBytes, decoded
// strictly: an unknown member is an error naming it. Each key has a rate
// limit (APIConfig.RateLimit).
//
// # Errors
//
// Every error response has one shape:
//
//	{"error":{"code":"invalid_field","field":"url","message":"must use https; use the partner's https:// address ..."}}
//
// "field" is present for invalid_field only. The codes, from errors.go:
//
//	400 invalid_field       a member or parameter is missing, malformed or unknown; field names it
//	400 invalid_json        the body is not one JSON object
//	401 unauthenticated     no bearer key, or an unknown one
//	403 forbidden           the key's role may not use the route
//	404 not_found           no such device, endpoint or route
//	405 method_not_allowed  the route exists for other methods, listed in Allow
//	409 conflict            e.g. a second endpoint for the same URL
//	413 body_too_large      the body is over the limit
//	429 rate_limited        the key is over its rate; Retry-After says when to retry
//	500 internal            our failure; logged, never detailed in the response
package subscribers
