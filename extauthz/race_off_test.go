//go:build !race

package extauthz_test

const raceDetector = false
