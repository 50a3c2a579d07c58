package interp

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// safety is what a native function or method of the allowlist can do with
// what evaluated code hands it. Every function in an interpreter's table
// has one (an unclassified function is left out of the table), and a test
// fails on any unclassified function or method, so a new yaegi table can't
// bring in an unreviewed native.
type safety int

const (
	// pure: it returns, and what it allocates is bounded by a small
	// multiple of its inputs, which already exist; no callbacks, no waits.
	pure safety = iota + 1
	// checked: a wrapper in this package checks the sizes it would reach
	// (a count, a precision, a tree of errors) before it runs.
	checked
	// callback: it calls back into interpreted code (a less function, a
	// Stringer, a Writer), whose every call the eval's guards bound; its
	// own work is bounded by its input.
	callback
	// blocking: it waits, and is wrapped to stop waiting when the eval
	// ends.
	blocking
)

// nativeSafety classifies every function and method the interpreter's
// standard library offers, by "pkg.Func" and "pkg.Type.Method".
var nativeSafety = classify(map[safety]string{
	pure: `
errors.As errors.Is errors.New errors.Unwrap
fmt.Sscan fmt.Sscanf fmt.Sscanln
math.Abs math.Acos math.Acosh math.Asin math.Asinh math.Atan math.Atan2 math.Atanh math.Cbrt math.Ceil
math.Copysign math.Cos math.Cosh math.Dim math.Erf math.Erfc math.Erfcinv math.Erfinv math.Exp math.Exp2
math.Expm1 math.FMA math.Float32bits math.Float32frombits math.Float64bits math.Float64frombits math.Floor
math.Frexp math.Gamma math.Hypot math.Ilogb math.Inf math.IsInf math.IsNaN math.J0 math.J1 math.Jn
math.Ldexp math.Lgamma math.Log math.Log10 math.Log1p math.Log2 math.Logb math.Max math.Min math.Mod
math.Modf math.NaN math.Nextafter math.Nextafter32 math.Pow math.Pow10 math.Remainder math.Round
math.RoundToEven math.Signbit math.Sin math.Sincos math.Sinh math.Sqrt math.Tan math.Tanh math.Trunc
math.Y0 math.Y1 math.Yn
sort.Float64s sort.Float64sAreSorted sort.Ints sort.IntsAreSorted sort.Reverse sort.SearchFloat64s
sort.SearchInts sort.SearchStrings sort.Strings sort.StringsAreSorted
sort.Float64Slice.Len sort.Float64Slice.Less sort.Float64Slice.Search sort.Float64Slice.Sort sort.Float64Slice.Swap
sort.IntSlice.Len sort.IntSlice.Less sort.IntSlice.Search sort.IntSlice.Sort sort.IntSlice.Swap
sort.StringSlice.Len sort.StringSlice.Less sort.StringSlice.Search sort.StringSlice.Sort sort.StringSlice.Swap
strconv.AppendBool strconv.AppendInt strconv.AppendQuoteRune strconv.AppendQuoteRuneToASCII
strconv.AppendQuoteRuneToGraphic strconv.AppendUint strconv.Atoi strconv.CanBackquote strconv.FormatBool
strconv.FormatInt strconv.FormatUint strconv.IsGraphic strconv.IsPrint strconv.Itoa strconv.ParseBool
strconv.ParseComplex strconv.ParseFloat strconv.ParseInt strconv.ParseUint strconv.QuoteRune
strconv.QuoteRuneToASCII strconv.QuoteRuneToGraphic strconv.QuotedPrefix strconv.Unquote strconv.UnquoteChar
strconv.NumError.Error strconv.NumError.Unwrap
strings.Clone strings.Compare strings.Contains strings.ContainsAny strings.ContainsRune strings.Count
strings.Cut strings.CutPrefix strings.CutSuffix strings.EqualFold strings.HasPrefix strings.HasSuffix
strings.Index strings.IndexAny strings.IndexByte strings.IndexRune strings.LastIndex strings.LastIndexAny
strings.LastIndexByte strings.NewReader strings.Title strings.ToLower strings.ToLowerSpecial strings.ToTitle
strings.ToTitleSpecial strings.ToUpper strings.ToUpperSpecial strings.Trim strings.TrimLeft strings.TrimPrefix
strings.TrimRight strings.TrimSpace strings.TrimSuffix
strings.Reader.Len strings.Reader.Read strings.Reader.ReadAt strings.Reader.ReadByte strings.Reader.ReadRune
strings.Reader.Reset strings.Reader.Seek strings.Reader.Size strings.Reader.UnreadByte strings.Reader.UnreadRune
strings.Replacer.Replace
time.Date time.FixedZone time.LoadLocationFromTZData time.Now time.Parse time.ParseDuration time.ParseInLocation
time.Since time.Unix time.UnixMicro time.UnixMilli time.Until
time.Duration.Abs time.Duration.Hours time.Duration.Microseconds time.Duration.Milliseconds time.Duration.Minutes
time.Duration.Nanoseconds time.Duration.Round time.Duration.Seconds time.Duration.String time.Duration.Truncate
time.Location.String time.Month.String time.ParseError.Error time.Weekday.String
time.Ticker.Reset time.Ticker.Stop time.Timer.Reset time.Timer.Stop
time.Time.Add time.Time.AddDate time.Time.After time.Time.AppendBinary time.Time.AppendFormat
time.Time.AppendText time.Time.Before time.Time.Clock time.Time.Compare time.Time.Date time.Time.Day
time.Time.Equal time.Time.Format time.Time.GoString time.Time.GobDecode time.Time.GobEncode time.Time.Hour
time.Time.ISOWeek time.Time.In time.Time.IsDST time.Time.IsZero time.Time.Local time.Time.Location
time.Time.MarshalBinary time.Time.MarshalJSON time.Time.MarshalText time.Time.Minute time.Time.Month
time.Time.Nanosecond time.Time.Round time.Time.Second time.Time.String time.Time.Sub time.Time.Truncate
time.Time.UTC time.Time.Unix time.Time.UnixMicro time.Time.UnixMilli time.Time.UnixNano
time.Time.UnmarshalBinary time.Time.UnmarshalJSON time.Time.UnmarshalText time.Time.Weekday time.Time.Year
time.Time.YearDay time.Time.Zone time.Time.ZoneBounds
unicode.In unicode.Is unicode.IsControl unicode.IsDigit unicode.IsGraphic unicode.IsLetter unicode.IsLower
unicode.IsMark unicode.IsNumber unicode.IsOneOf unicode.IsPrint unicode.IsPunct unicode.IsSpace
unicode.IsSymbol unicode.IsTitle unicode.IsUpper unicode.SimpleFold unicode.To unicode.ToLower
unicode.ToTitle unicode.ToUpper
unicode.SpecialCase.ToLower unicode.SpecialCase.ToTitle unicode.SpecialCase.ToUpper
unicode/utf8.AppendRune unicode/utf8.DecodeLastRune unicode/utf8.DecodeLastRuneInString unicode/utf8.DecodeRune
unicode/utf8.DecodeRuneInString unicode/utf8.EncodeRune unicode/utf8.FullRune unicode/utf8.FullRuneInString
unicode/utf8.RuneCount unicode/utf8.RuneCountInString unicode/utf8.RuneLen unicode/utf8.RuneStart
unicode/utf8.Valid unicode/utf8.ValidRune unicode/utf8.ValidString`,
	checked: `
errors.Join
fmt.Append fmt.Appendf fmt.Appendln fmt.Errorf fmt.Fprint fmt.Fprintf fmt.Fprintln fmt.Print fmt.Printf
fmt.Println fmt.Sprint fmt.Sprintf fmt.Sprintln
strconv.AppendFloat strconv.FormatComplex strconv.FormatFloat strconv.Quote strconv.QuoteToASCII
strconv.QuoteToGraphic
strings.Fields strings.FieldsFunc strings.Join strings.Repeat strings.Replace strings.ReplaceAll
strings.Split strings.SplitAfter strings.SplitAfterN strings.SplitN strings.ToValidUTF8`,
	callback: `
sort.Find sort.IsSorted sort.Search sort.Slice sort.SliceIsSorted sort.SliceStable sort.Sort sort.Stable
strings.ContainsFunc strings.IndexFunc strings.LastIndexFunc strings.Map strings.TrimFunc
strings.TrimLeftFunc strings.TrimRightFunc
strings.Reader.WriteTo strings.Replacer.WriteString`,
	blocking: `time.Sleep`,
})

func classify(groups map[safety]string) map[string]safety {
	m := map[string]safety{}
	for s, names := range groups {
		for _, n := range strings.Fields(names) {
			m[n] = s
		}
	}
	return m
}

// maxPrecision bounds the precision strconv formats a float with: its
// output grows with it, whatever the number.
const maxPrecision = 1 << 20

// wrapFloats bounds the precision of strconv's float formatting.
func wrapFloats(m map[string]reflect.Value) {
	check := func(fn string, prec int) {
		if prec > maxPrecision {
			panic(fmt.Sprintf("strconv.%s: precision %d is more than %d", fn, prec, maxPrecision))
		}
	}
	m["FormatFloat"] = reflect.ValueOf(func(f float64, fmt byte, prec, bitSize int) string {
		check("FormatFloat", prec)
		return strconv.FormatFloat(f, fmt, prec, bitSize)
	})
	m["AppendFloat"] = reflect.ValueOf(func(dst []byte, f float64, fmt byte, prec, bitSize int) []byte {
		check("AppendFloat", prec)
		return strconv.AppendFloat(dst, f, fmt, prec, bitSize)
	})
	m["FormatComplex"] = reflect.ValueOf(func(c complex128, fmt byte, prec, bitSize int) string {
		check("FormatComplex", prec)
		return strconv.FormatComplex(c, fmt, prec, bitSize)
	})
}

// Error trees. errors.Join and fmt.Errorf with %w build trees of errors
// that errors.Is, errors.As and Error then walk by native recursion; a
// tree built in a loop can be deep enough to overflow the stack, or share
// nodes so that a walk visits more nodes than there are atoms in the
// machine. So the two builders refuse a tree of more than maxErrNodes
// nodes (shared ones counted each time they are reached) or, for Join,
// whose message is built on each Error call, more than maxBytes of text.
const maxErrNodes = 10000

// errTrees sizes error trees, and remembers the size of the trees its
// builders made, so that a chain built in a loop costs one step per link
// instead of a walk of the whole chain. One per interpreter.
type errTrees struct {
	mu   sync.Mutex
	seen map[error]errSize
}

type errSize struct {
	nodes int
	bytes float64 // of the message, as Error builds it
}

// size sizes the trees errs, stopping past maxErrNodes.
func (t *errTrees) size(errs []error) (total errSize) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stack := append([]error(nil), errs...)
	for len(stack) > 0 && total.nodes <= maxErrNodes {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if e == nil {
			continue
		}
		if s, ok := t.lookup(e); ok {
			total.nodes += s.nodes
			total.bytes += s.bytes
			continue
		}
		total.nodes++
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			stack = append(stack, u.Unwrap()...)
			if isJoin(e) {
				continue // its message is made of its parts'
			}
		case interface{ Unwrap() error }:
			stack = append(stack, u.Unwrap())
		}
		total.bytes += float64(len(e.Error()))
	}
	return total
}

func (t *errTrees) lookup(e error) (errSize, bool) {
	if !reflect.TypeOf(e).Comparable() {
		return errSize{}, false
	}
	s, ok := t.seen[e]
	return s, ok
}

// built records the size of an error a builder made.
func (t *errTrees) built(e error, s errSize) {
	if e == nil || !reflect.TypeOf(e).Comparable() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil || len(t.seen) > 1<<16 {
		t.seen = map[error]errSize{} // forget, rather than grow
	}
	t.seen[e] = s
}

// isJoin reports whether e is errors.Join's: its message is made of its
// parts' on each call, where fmt.Errorf's is made once.
func isJoin(e error) bool { return reflect.TypeOf(e) == joinType }

var joinType = reflect.TypeOf(errors.Join(errors.New("")))

// check refuses a tree of parts errs, plus one node for the error about to
// be built, that would pass the limits.
func (t *errTrees) check(fn string, errs []error, maxBytes uint64) errSize {
	s := t.size(errs)
	s.nodes++
	if s.nodes > maxErrNodes {
		panic(fmt.Sprintf("%s: the errors would form a tree of more than %d errors", fn, maxErrNodes))
	}
	if s.bytes > float64(maxBytes) {
		panic(fmt.Sprintf("%s: the error's message would be about %.0f bytes; the limit is %d", fn, s.bytes, maxBytes))
	}
	return s
}

// wrapErrors bounds errors.Join.
func wrapErrors(m map[string]reflect.Value, trees *errTrees, maxBytes uint64) {
	m["Join"] = reflect.ValueOf(func(errs ...error) error {
		s := trees.check("errors.Join", errs, maxBytes)
		e := errors.Join(errs...)
		trees.built(e, s)
		return e
	})
}

// wrappedErrors returns the errors among a, which fmt.Errorf may wrap.
func wrappedErrors(a []any) []error {
	var errs []error
	for _, x := range a {
		if e, ok := x.(error); ok {
			errs = append(errs, e)
		}
	}
	return errs
}

// wrapToValidUTF8 bounds strings.ToValidUTF8: each invalid run becomes a copy
// of the replacement.
func wrapToValidUTF8(m map[string]reflect.Value, maxBytes uint64) {
	m["ToValidUTF8"] = reflect.ValueOf(func(s, replacement string) string {
		if n := float64(len(s)) * float64(1+len(replacement)); n > float64(maxBytes) && len(replacement) > 0 {
			panic(fmt.Sprintf("strings.ToValidUTF8: the result could be about %.0f bytes; the limit is %d", n, maxBytes))
		}
		return strings.ToValidUTF8(s, replacement)
	})
}
