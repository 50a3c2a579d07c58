package sandbox

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const filterEnv = "OPSREPL_TEST_FILTER_CHILD"

// TestFilter: once a child has applied its limits and filter, what a
// compromised child would try is refused: files, sockets, programs, new
// processes, signals to others, other processes' limits, its own
// attributes. Each row runs in a process of its own (the filter cannot be
// undone).
func TestFilter(t *testing.T) {
	rows := []string{"open", "socket", "execve", "fork", "kill-parent", "prlimit-parent", "setrlimit", "dumpable", "pdeathsig", "ptrace"}
	for _, row := range rows {
		t.Run(row, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFilterChild$")
			cmd.Env = append(os.Environ(), filterEnv+"="+row)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "refused: ") {
				t.Fatalf("%s was not refused: %v\n%s", row, err, out)
			}
		})
	}
}

// TestFilterChild applies a child's limits and filter, tries one thing,
// and prints whether it was refused.
func TestFilterChild(t *testing.T) {
	row := os.Getenv(filterEnv)
	if row == "" {
		t.Skip("run by TestFilter")
	}
	if err := applyLimits(childLimits{MaxMemory: 1 << 30, MaxCPU: time.Minute, Seccomp: true}); err != nil {
		t.Fatal(err)
	}
	ppid := os.Getppid()
	var err error
	switch row {
	case "open":
		_, err = os.Open("/etc/passwd")
	case "socket":
		_, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	case "execve":
		err = syscall.Exec("/bin/true", []string{"true"}, nil)
	case "fork":
		_, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			err = e
		}
	case "kill-parent":
		err = syscall.Kill(ppid, 0)
	case "prlimit-parent":
		err = unix.Prlimit(ppid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 3, Max: 3}, nil)
	case "setrlimit":
		err = unix.Setrlimit(unix.RLIMIT_CPU, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
	case "dumpable":
		err = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	case "pdeathsig":
		err = unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	case "ptrace":
		err = unix.PtraceAttach(ppid)
	}
	if err == nil {
		t.Fatalf("%s: allowed", row)
	}
	os.Stdout.WriteString("refused: " + err.Error() + "\n")
}
