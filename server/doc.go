// Package server is `deployer serve`, the webhook server on the droplet:
// signed requests from GitHub, Slack and Standard Webhooks senders become
// runs of the same pipeline against the local Engine.
//
// This file set holds the schemes' signature checks and signers (sign.go),
// which `deployer sign` uses too. A request is verified over its raw body,
// by every configured secret of its hook in turn (so that a secret can be
// rotated), with constant-time comparisons; a scheme with a timestamp
// accepts it within Tolerance of the server's clock. A failed check never
// says which signature or secret it compared.
//
// GitHub's requests carry no signed timestamp and their X-GitHub-Delivery
// is not signed; Slack's carry no ID. A replay cache keys on what is
// signed: the signature itself for those two, the message ID that
// VerifyStandard returns for Standard Webhooks.
package server
