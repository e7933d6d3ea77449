package policy

import "time"

// tooOld reports whether authentication at authTime is older than maxAge at
// now. clock_skew is added so that max_age 0 ("authenticated just now") is
// satisfiable and cannot loop the user through step-up forever.
func tooOld(authTime, now time.Time, maxAge, skew time.Duration) bool {
	return now.Sub(authTime) > maxAge+skew
}

// inFuture reports an instant later than now beyond the allowed skew.
func inFuture(t, now time.Time, skew time.Duration) bool {
	return t.Sub(now) > skew
}
