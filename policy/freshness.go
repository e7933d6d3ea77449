package policy

import "time"

// tooOld reports whether authentication at authTime is older than maxAge at
// now. clock_skew is added so that max_age 0 ("authenticated just now") is
// satisfiable and cannot loop the user through step-up forever. The sum is
// never formed: the largest accepted max_age plus skew would overflow
// time.Duration and turn negative, refusing every token.
func tooOld(authTime, now time.Time, maxAge, skew time.Duration) bool {
	age := now.Sub(authTime)
	return age > maxAge && age-maxAge > skew
}

// inFuture reports an instant later than now beyond the allowed skew.
func inFuture(t, now time.Time, skew time.Duration) bool {
	return t.Sub(now) > skew
}
