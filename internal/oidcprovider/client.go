package oidcprovider

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// MCPClient runs node/mcp-client.mjs: oauth4webapi, acting as an MCP client,
// connects to mcpURL with a token that is not accepted, follows the
// challenge's resource_metadata through RFC 9728 discovery (checking that the
// document's resource is mcpURL, §3.3) to the authorization server's metadata,
// then sends tokenWithout (403 insufficient_scope expected) and tokenWith
// (200 expected). It returns the JSON line the script prints, or an error
// with its output. It needs node ≥ 20 and the fixture's npm packages (installed
// like Start does).
func MCPClient(ctx context.Context, mcpURL, tokenWithout, tokenWith string) (string, error) {
	dir := nodeDir()
	if err := install(dir); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "mcp-client.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MCP_URL="+mcpURL, "TOKEN_WITHOUT_SCOPE="+tokenWithout, "TOKEN_WITH_SCOPE="+tokenWith)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("node mcp-client.mjs: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}
