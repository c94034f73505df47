package gguf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CheckTarget reports whether a Writer may create or replace the file at
// path: path must name nothing, or (with overwrite) a regular file. A
// directory, a device, a FIFO or a socket is refused even with overwrite,
// since renaming a new file over it would turn it into a regular file. A
// symbolic link is followed: the file is written where the link leads
// (the temporary file beside that target), and the link stays a link; a
// link that leads nowhere is refused, since the file it would create is
// not the one named.
func CheckTarget(path string, overwrite bool) error {
	_, err := resolveTarget(path, overwrite)
	return err
}

// resolveTarget is CheckTarget returning the path to rename onto: path, or
// the end of the chain of links it names.
func resolveTarget(path string, overwrite bool) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("gguf: %s: "+format, append([]any{path}, args...)...)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("gguf: %w", err)
	}
	target := path
	if fi.Mode()&fs.ModeSymlink != 0 {
		link, _ := os.Readlink(path)
		if target, err = filepath.EvalSymlinks(path); errors.Is(err, fs.ErrNotExist) {
			return fail("dangling symbolic link (to %s): refusing to create a file through it; remove the link or name its target", link)
		} else if err != nil {
			return fail("symbolic link (to %s): %v", link, err)
		}
		if fi, err = os.Lstat(target); err != nil {
			return "", fmt.Errorf("gguf: %w", err)
		}
	}
	if !fi.Mode().IsRegular() {
		shown := path
		if target != path {
			shown = path + " (a link to " + target + ")"
		}
		return "", fmt.Errorf("gguf: %s: is a %s, not a regular file: refused even with overwrite", shown, fileKind(fi.Mode()))
	}
	if !overwrite {
		return fail("target exists (overwrite not requested)")
	}
	return target, nil
}

// fileKind names the kind of file a mode describes.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	default:
		return "special file (" + m.Type().String() + ")"
	}
}

// partialInfix joins a target's name and the writer's process id in the
// name of its temporary file: out.gguf.partial-1234 (out.gguf.partial-1234.2
// for a second one of the same process).
const partialInfix = ".partial-"

// createPartial creates the temporary file for target in target's
// directory, readable by all (0644, as the ecosystem's tools write models).
func createPartial(target string) (*os.File, error) {
	prefix := target + partialInfix + strconv.Itoa(os.Getpid())
	name := prefix
	for n := 2; ; n++ {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			// The umask may have taken bits away; a model is an ordinary
			// readable file.
			if err := f.Chmod(0o644); err != nil {
				f.Close()
				os.Remove(name)
				return nil, err
			}
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) || n > 1000 {
			return nil, err
		}
		name = prefix + "." + strconv.Itoa(n)
	}
}

// RemoveStale removes the temporary files that writers of path (or of the
// file a link at path leads to) left behind when their process was killed
// before it could remove them: the files named path.partial-PID, or
// path.partial-PID.N, whose process PID no longer runs. Files of this
// process and of running ones stay. It returns the paths it removed.
func RemoveStale(path string) ([]string, error) {
	target := path
	if t, err := filepath.EvalSymlinks(path); err == nil {
		target = t
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("gguf: %w", err)
	}
	var removed []string
	for _, e := range entries {
		pid, ok := partialPID(e.Name(), base)
		if !ok || !e.Type().IsRegular() || pid == os.Getpid() || processRuns(pid) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("gguf: stale temporary file: %w", err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

// partialPID returns the process id in name when name is that of a
// temporary file of base (see createPartial).
func partialPID(name, base string) (int, bool) {
	rest, ok := strings.CutPrefix(name, base+partialInfix)
	if !ok {
		return 0, false
	}
	digits, seq, two := strings.Cut(rest, ".")
	if two && !allDigits(seq) || !allDigits(digits) {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
