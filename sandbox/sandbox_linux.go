package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// supported reports whether children can be started on this platform.
const supported = true

// exePath is how a child is started: the running executable itself, even
// if its file has since been replaced or removed.
const exePath = "/proc/self/exe"

// sysProcAttr: the child dies with the host, and is in a process group of
// its own, so a terminal's Ctrl-C reaches the host (which cancels) and not
// the child.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// residentBytes returns the resident set size of process pid.
func residentBytes(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

// prepareChild runs first in a child: it closes every descriptor it
// inherited but the channel and standard I/O (a descriptor the host opened
// without close-on-exec would otherwise pass through), asks the kernel's
// OOM killer to pick this process before any other, and makes it
// undumpable (no ptrace or /proc/PID/mem by other processes of the user).
func prepareChild() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list descriptors: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= channelFD {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the listing's own descriptor, gone by now
		}
		// The Go runtime's own poller descriptors are not inherited (they
		// are close-on-exec); they must stay.
		if link == "anon_inode:[eventpoll]" || link == "anon_inode:[eventfd]" {
			continue
		}
		unix.Close(fd)
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		return fmt.Errorf("oom_score_adj: %w", err)
	}

	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("undumpable: %w", err)
	}
	return nil
}

// applyLimits caps the child, before anything is evaluated in it: data
// (the heap and every other private writable mapping; not under the race
// detector, whose shadow memory is counted too), CPU time over its life,
// no files written, no core dumps, few descriptors; then a seccomp filter
// that lets through only what the Go runtime and the channel need.
func applyLimits(l childLimits) error {
	set := func(name string, res int, v uint64) error {
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	applyGoLimits(l)
	if l.MaxMemory > 0 && !raceEnabled {
		if err := set("RLIMIT_DATA", unix.RLIMIT_DATA, l.MaxMemory); err != nil {
			return err
		}
	}
	if l.MaxCPU > 0 {
		if err := set("RLIMIT_CPU", unix.RLIMIT_CPU, uint64((l.MaxCPU+time.Second-1)/time.Second)); err != nil {
			return err
		}
	}
	if err := set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, 0); err != nil {
		return err
	}
	if err := set("RLIMIT_CORE", unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	if err := set("RLIMIT_NOFILE", unix.RLIMIT_NOFILE, 64); err != nil {
		return err
	}
	_ = time.Local.String() // load the local time zone while files can still be read
	if l.Seccomp {
		return loadFilter()
	}
	return nil
}

// allowedSyscalls is what a child may call once its filter is in place:
// memory, threads, signals, time and futexes for the Go runtime, and reads
// and writes on descriptors it already has. Nothing opens a file or a
// socket, executes a program, starts a process (clone only with
// CLONE_THREAD), signals another process, or changes limits or process
// attributes (no prlimit64, prctl, setrlimit).
var allowedSyscalls = []string{
	// Memory.
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "membarrier",
	// Futexes, scheduling (threads: see threadSyscalls).
	"futex", "futex_waitv", "set_robust_list", "get_robust_list", "set_tid_address", "rseq",
	"sched_yield", "sched_getaffinity", "gettid", "getpid", "exit", "exit_group",
	"restart_syscall",
	// Signals (the runtime preempts goroutines with signals to its own threads).
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	// Time.
	"clock_gettime", "clock_getres", "gettimeofday", "nanosleep", "clock_nanosleep",
	"timer_create", "timer_settime", "timer_delete", "setitimer", "getitimer",
	// I/O on descriptors already open (the channel, stderr), and polling.
	"read", "write", "readv", "writev", "pread64", "close", "fcntl", "fstat", "newfstatat", "lseek",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2", "pipe2",
	"ppoll", "poll",
	// Facts about itself. (Not prlimit64: it sets limits, of any process.)
	"getrandom", "getrlimit", "getrusage", "uname", "getuid", "geteuid", "getgid", "getegid",
}

// signalSyscalls may only target this process's own threads.
var signalSyscalls = []string{"tgkill"}

// cloneThread is the flag clone must carry: a new thread, never a new
// process.
const cloneThread = unix.CLONE_THREAD

// known returns the names that are system calls of this architecture.
func known(info *arch.Info, names ...string) []string {
	var out []string
	for _, n := range names {
		if _, ok := info.SyscallNames[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

func loadFilter() error {
	info, err := arch.GetInfo("")
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	names := known(info, allowedSyscalls...)
	own := seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: uint64(os.Getpid())}}
	var signals []seccomp.NameWithConditions
	for _, n := range signalSyscalls {
		signals = append(signals, seccomp.NameWithConditions{Name: n, Conditions: own})
	}
	threads := []seccomp.NameWithConditions{{Name: "clone", Conditions: seccomp.ArgumentConditions{
		{Argument: 0, Operation: seccomp.BitsSet, Value: cloneThread}}}}
	filter := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionErrno,
			Syscalls: []seccomp.SyscallGroup{
				{Action: seccomp.ActionAllow, Names: names},
				{Action: seccomp.ActionAllow, NamesWithCondtions: signals},
				{Action: seccomp.ActionAllow, NamesWithCondtions: threads},
				// glibc's pthread_create tries clone3 first and falls back
				// to clone only when the kernel says it has no clone3.
				{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: known(info, "clone3")},
			},
		},
	}
	if !seccomp.Supported() {
		return errors.New("seccomp: not supported by this kernel")
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}

// killGroup kills the child's process group: the child, and anything it
// could have started.
func killGroup(p *os.Process) {
	syscall.Kill(-p.Pid, syscall.SIGKILL)
	p.Kill()
}

// socketPair returns the two ends of a new channel, close-on-exec.
func socketPair() (host, child *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "sandbox-host"), os.NewFile(uintptr(fds[1]), "sandbox-child"), nil
}

// killedBySignal reports whether the child was killed by SIGKILL or
// SIGXCPU (the kernel's ways of enforcing RLIMIT_CPU).
func killedBySignal(st *os.ProcessState) bool {
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGKILL || ws.Signal() == syscall.SIGXCPU)
}
