package loopback

import "testing"

func TestRate(t *testing.T) {
	data := make([]byte, 4<<20)
	for _, check := range []bool{false, true} {
		r, err := Rate(data, check, 3)
		if err != nil || r <= 0 {
			t.Fatalf("check %v: %v MiB/s, %v", check, r, err)
		}
	}
}
