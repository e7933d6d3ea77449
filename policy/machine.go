package policy

import "fmt"

// MachineRule says which tokens have no end user behind them.
type MachineRule string

const (
	// MachineRFC9068 treats a token as a machine token when its sub equals its
	// client_id, or its gty is client-credentials (RFC 9068 §2.2 and common IdP practice).
	MachineRFC9068 MachineRule = "rfc9068"
	// MachineClientID is the seed's rule: any token carrying client_id.
	MachineClientID MachineRule = "client_id"
)

// ParseMachineRule validates a configured rule; "" selects RFC 9068.
func ParseMachineRule(s string) (MachineRule, error) {
	switch MachineRule(s) {
	case "", MachineRFC9068:
		return MachineRFC9068, nil
	case MachineClientID:
		return MachineClientID, nil
	}
	return "", fmt.Errorf("%q is not one of rfc9068, client_id", s)
}

// IsMachine reports whether c is a machine token under rule r.
func (r MachineRule) IsMachine(c *Claims) bool {
	if r == MachineClientID {
		return c.ClientID != ""
	}
	return (c.ClientID != "" && c.Subject == c.ClientID) || c.Gty == "client-credentials"
}
