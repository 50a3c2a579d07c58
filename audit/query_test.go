package audit

import (
	"path/filepath"
	"testing"
	"time"
)

func TestEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.jsonl")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, r := range []Record{
		{Kind: KindSession, Session: "s1", Subject: "alice", Outcome: OutcomeOpen, Time: t0},
		{Kind: KindIntent, Session: "s1", Request: 1, Subject: "alice", Line: "heapdump --full --yes", Object: "cmd:heapdump", Decision: DecisionAllow, Time: t0},
		{Kind: KindIntent, Session: "s2", Request: 1, Subject: "bob", Line: "memstats", Object: "cmd:memstats", Decision: DecisionAllow, Time: t0.Add(time.Second)},
		{Kind: KindIntent, Session: "s1", Request: 1, Subject: "alice", Line: "heapdump --full --yes", Object: "cmd:heapdump-full", Decision: DecisionDeny, Message: "no", Time: t0},
		{Kind: KindOutcome, Session: "s1", Request: 1, Subject: "alice", Outcome: "forbidden", Time: t0.Add(2 * time.Second)},
		{Kind: KindIntent, Session: "s2", Request: 2, Subject: "bob", Line: "1+2", Object: "eval", Decision: DecisionAllow, Time: t0.Add(3 * time.Second)},
		{Kind: KindHandshake, Remote: "10.0.0.9:1234", Outcome: "unauthenticated", Time: t0.Add(4 * time.Second)},
		{Kind: KindOutcome, Session: "s2", Request: 1, Subject: "bob", Outcome: OutcomeOK, Time: t0.Add(5 * time.Second)},
		{Kind: KindOutcome, Session: "s2", Subject: "bob", Outcome: "throttled", Count: 7, Time: t0.Add(6 * time.Second)},
	} {
		if err := l.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	tests := []struct {
		name string
		f    Filter
		want []string // each entry: its line, or its kind
	}{
		{"all", Filter{}, []string{"session", "heapdump --full --yes", "memstats", "1+2", "handshake", "outcome"}},
		{"subject", Filter{Subject: "bob"}, []string{"memstats", "1+2", "outcome"}},
		{"denied: the further decision counts, and refused handshakes", Filter{Denied: true}, []string{"heapdump --full --yes", "handshake"}},
		{"command, further objects included", Filter{Command: "heapdump"}, []string{"heapdump --full --yes"}},
		{"eval", Filter{Command: "eval"}, []string{"1+2"}},
		{"since", Filter{Since: t0.Add(3 * time.Second)}, []string{"1+2", "handshake", "outcome"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := Entries(tt.f, path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				if e.IsRequest() {
					got = append(got, e.Record.Line)
				} else {
					got = append(got, e.Record.Kind)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q; want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %q; want %q", got, tt.want)
				}
			}
		})
	}
	es, _ := Entries(Filter{Command: "heapdump"}, path)
	if e := es[0]; e.Record.Decision != DecisionDeny || e.Record.Object != "cmd:heapdump-full" || e.Outcome == nil || e.Outcome.Outcome != "forbidden" || len(e.Records) != 3 {
		t.Fatalf("the joined request: %+v", e)
	}
	es, _ = Entries(Filter{Command: "eval"}, path)
	if es[0].Outcome != nil {
		t.Fatalf("a request whose outcome the log lacks: %+v", es[0].Outcome)
	}
}
