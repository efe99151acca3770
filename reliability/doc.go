// Package reliability holds Ajil's reliability suite: tests that break
// the parts around a fan-out — a dispatcher killed mid-send, Redis stopped
// or wiped, the NATS stream leader's node lost, the embedded server of
// `ajil dev` killed, partners and FCM failing, bad and poisonous input, a
// shutdown during a fan-out — and count, per device token and per partner
// endpoint, that every breaking alert still arrives, and arrives once
// unless the failure makes a repeat unavoidable.
//
// Every part is the real one, on loopback: nats-server embedded (a single
// server, or a three-node cluster), redis-server, the Firebase Admin SDK
// against a fake FCM endpoint, partner receivers verifying Standard
// Webhooks signatures, and the ajil binary as a subprocess where a crash
// must be a real SIGKILL. RELIABILITY.md at the repository root lists each
// scenario with the figures of its runs and the command that reproduces it:
//
//	go test -race -run TestName ./reliability/
//
// The package has no code of its own; it is only its tests.
package reliability
