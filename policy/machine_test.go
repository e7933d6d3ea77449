package policy

import "testing"

func TestParseMachineRule(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    MachineRule
		wantErr string
	}{
		{name: "an unset rule is rfc9068", in: "", want: MachineRFC9068},
		{name: "rfc9068 is accepted", in: "rfc9068", want: MachineRFC9068},
		{name: "the seed's client_id rule can be selected", in: "client_id", want: MachineClientID},
		{name: "rule names are case-sensitive", in: "RFC9068", wantErr: `"RFC9068" is not one of rfc9068, client_id`},
		{name: "a misspelt rule names the allowed ones", in: "client-id", wantErr: `"client-id" is not one of rfc9068, client_id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMachineRule(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseMachineRule(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("ParseMachineRule(%q) returned %q with its error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseMachineRule(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestMachineRuleIsMachine(t *testing.T) {
	tests := []struct {
		name   string
		claims Claims
		rfc    bool // under rfc9068
		client bool // under client_id
	}{
		{name: "sub equal to client_id is a machine under both rules", claims: Claims{Subject: "svc", ClientID: "svc"}, rfc: true, client: true},
		{name: "gty client-credentials is a machine under rfc9068 only", claims: Claims{Subject: "svc-123", Gty: "client-credentials"}, rfc: true, client: false},
		{name: "gty client-credentials with another sub is still a machine", claims: Claims{Subject: "svc-123", ClientID: "svc", Gty: "client-credentials"}, rfc: true, client: true},
		{name: "a user token naming its client is human under rfc9068 but a machine under client_id", claims: Claims{Subject: "user-1", ClientID: "web-app"}, rfc: false, client: true},
		{name: "a token with neither sub nor client_id is human, not a machine by equal emptiness", claims: Claims{}, rfc: false, client: false},
		{name: "a sub without client_id is human", claims: Claims{Subject: "user-1"}, rfc: false, client: false},
		{name: "gty client_credentials with an underscore is not the contract's value", claims: Claims{Subject: "user-1", Gty: "client_credentials"}, rfc: false, client: false},
		{name: "gty authorization_code is human", claims: Claims{Subject: "user-1", ClientID: "web", Gty: "authorization_code"}, rfc: false, client: true},
		{name: "sub and client_id compare exactly", claims: Claims{Subject: "SVC", ClientID: "svc"}, rfc: false, client: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.claims
			if got := MachineRFC9068.IsMachine(&c); got != tt.rfc {
				t.Errorf("rfc9068: IsMachine = %v, want %v", got, tt.rfc)
			}
			if got := MachineRule("").IsMachine(&c); got != tt.rfc {
				t.Errorf("zero rule: IsMachine = %v, want the rfc9068 answer %v", got, tt.rfc)
			}
			if got := MachineClientID.IsMachine(&c); got != tt.client {
				t.Errorf("client_id: IsMachine = %v, want %v", got, tt.client)
			}
		})
	}
}
