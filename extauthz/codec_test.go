package extauthz_test

import (
	"os"
	"testing"

	"google.golang.org/grpc"

	"github.com/stepup-authz/stepup-authz/extauthz/wire"
)

// codecEnv names the codec this suite's gRPC servers speak protobuf with
// (wire.Names); unset, it is serve's default. .ci/run runs the suite once more
// with STEPUP_TEST_CODEC=proto, grpc-go's standard codec, so that every test
// over gRPC also holds without the hand-written fast path.
const codecEnv = "STEPUP_TEST_CODEC"

// serverCodec is the gRPC server option for the codec codecEnv names.
func serverCodec(t testing.TB) grpc.ServerOption {
	t.Helper()
	name := os.Getenv(codecEnv)
	if name == "" {
		name = wire.Default
	}
	opt, err := wire.ServerOption(name)
	if err != nil {
		t.Fatalf("%s: %v", codecEnv, err)
	}
	return opt
}
