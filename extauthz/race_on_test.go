//go:build race

package extauthz_test

// raceDetector: the race detector allows at most 8128 live goroutines, so
// tests that start thousands of Checks at once start fewer under it.
const raceDetector = true
