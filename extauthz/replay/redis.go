package replay

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the store shared by replicas: SET key NX PX ttl, so one Redis
// decides atomically which replica saw a proof first, and Redis expires keys
// itself. Every error is ErrUnavailable and fails closed.
type Redis struct {
	client *redis.Client
	addr   string
}

// RedisOptions configure a Redis store.
type RedisOptions struct {
	Address  string // host:port
	Password string
	TLS      bool
	// Timeout bounds each command when the caller's context has no earlier
	// deadline; 0 means 500ms. A Check waits no longer than this on Redis.
	Timeout time.Duration
}

// KeyPrefix is the prefix of every key the store writes.
const KeyPrefix = "stepup-authz:dpop:"

// NewRedis returns a store using a pooled client; it does not connect until
// first used.
func NewRedis(o RedisOptions) *Redis {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	opts := &redis.Options{
		Addr:         o.Address,
		Password:     o.Password,
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		// A failed command is a refused proof, not something to retry while
		// the request waits; the next request tries again.
		MaxRetries: -1,
		// Honour the Check's deadline on every command.
		ContextTimeoutEnabled: true,
		// No CLIENT SETINFO: older and managed Redis servers refuse it.
		DisableIdentity: true,
	}
	if o.TLS {
		host, _, err := net.SplitHostPort(o.Address)
		if err != nil {
			host = o.Address
		}
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	return &Redis{client: redis.NewClient(opts), addr: o.Address}
}

// Use implements Store.
func (r *Redis) Use(ctx context.Context, key [32]byte, ttl time.Duration) (bool, error) {
	var buf [len(KeyPrefix) + 43]byte
	k := base64.RawURLEncoding.AppendEncode(append(buf[:0], KeyPrefix...), key[:])
	// Redis keeps PX in whole milliseconds; round up so the key never lives
	// shorter than asked.
	ttl = ttl.Truncate(time.Millisecond) + time.Millisecond
	ok, err := r.client.SetNX(ctx, string(k), 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("%w: redis %s: %v", ErrUnavailable, r.addr, err)
	}
	return ok, nil
}

// Ping checks that Redis answers, for readiness and start-up logs.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: redis %s: %v", ErrUnavailable, r.addr, err)
	}
	return nil
}

// Close closes the client's connections.
func (r *Redis) Close() error { return r.client.Close() }
