//go:build unix

package gguf

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// writeTiny writes a file of one key to path, returning Create's or
// Close's error.
func writeTiny(path string, overwrite bool) error {
	w, err := Create(path, Header{KVs: []KV{{"a", Bool(true)}}}, CreateOptions{Overwrite: overwrite})
	if err != nil {
		return err
	}
	return w.Close()
}

// TestTargetNotRegularRefused checks that a directory, a FIFO, a socket and
// a character device at the target, or behind a link there, are refused
// even with Overwrite, and stay what they were, with no temporary file.
func TestTargetNotRegularRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	toNull := filepath.Join(dir, "to-null")
	if err := os.Symlink(os.DevNull, toNull); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, kind string }{
		{fifo, "named pipe (FIFO)"},
		{sock, "socket"},
		{sub, "directory"},
		{os.DevNull, "character device"},
		{toNull, "character device"},
	}
	for _, c := range cases {
		before, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, overwrite := range []bool{false, true} {
			err := writeTiny(c.path, overwrite)
			if err == nil || !strings.Contains(err.Error(), "is a "+c.kind+", not a regular file") || !strings.HasPrefix(err.Error(), "gguf: "+c.path) {
				t.Errorf("%s (overwrite %v): error %v, want it refused as a %s", c.path, overwrite, err, c.kind)
			}
			if err := CheckTarget(c.path, overwrite); err == nil {
				t.Errorf("%s: CheckTarget accepts it", c.path)
			}
		}
		after, err := os.Lstat(c.path)
		if err != nil || after.Mode() != before.Mode() || !os.SameFile(before, after) {
			t.Errorf("%s changed: %v -> %v (%v)", c.path, before.Mode(), after, err)
		}
	}
	if names := dirNames(t, dir); len(names) != 4 {
		t.Fatalf("directory holds %v", names)
	}
}

// TestTargetSymlink checks that a link to a regular file is written
// through (the link stays, its target is replaced, the temporary file goes
// beside the target), that without Overwrite it counts as existing, and
// that a dangling link is refused with a message of its own.
func TestTargetSymlink(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	real := filepath.Join(other, "real.gguf")
	if err := os.WriteFile(real, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.gguf")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := writeTiny(link, false); err == nil || !strings.Contains(err.Error(), "target exists") {
		t.Fatalf("link without overwrite: %v", err)
	}
	w, err := Create(link, Header{KVs: []KV{{"a", Bool(true)}}}, CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, other); len(names) != 2 || names[1] != "real.gguf.partial-"+strconv.Itoa(os.Getpid()) {
		t.Fatalf("while writing through the link, the target's directory holds %v", names)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	f, err := Open(real)
	if err != nil {
		t.Fatalf("the link's target is not the new file: %v", err)
	}
	f.Close()
	if names := dirNames(t, other); len(names) != 1 {
		t.Fatalf("target directory holds %v", names)
	}

	dangling := filepath.Join(dir, "dangling.gguf")
	if err := os.Symlink(filepath.Join(other, "nowhere.gguf"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, overwrite := range []bool{false, true} {
		if err := writeTiny(dangling, overwrite); err == nil || !strings.Contains(err.Error(), "dangling symbolic link (to "+filepath.Join(other, "nowhere.gguf")+")") {
			t.Errorf("dangling link (overwrite %v): %v", overwrite, err)
		}
	}
	if _, err := os.Stat(filepath.Join(other, "nowhere.gguf")); err == nil {
		t.Fatal("a file was created through the dangling link")
	}
}

// deadPID returns the id of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestRemoveStale checks that only the temporary files of the target whose
// process has ended are removed, and reported.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	dead := strconv.Itoa(deadPID(t))
	stale := []string{out + ".partial-" + dead, out + ".partial-" + dead + ".3"}
	keep := []string{
		out + ".partial-" + strconv.Itoa(os.Getpid()),  // this process
		out + ".partial-" + strconv.Itoa(os.Getppid()), // a running one
		out + ".partial-x" + dead,                      // not of this naming
		out + ".partial-" + dead + ".x",
		filepath.Join(dir, "other.gguf.partial-"+dead), // another target's
		out,
	}
	for _, p := range append(append([]string(nil), stale...), keep...) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveStale(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, "|") != strings.Join(stale, "|") {
		t.Fatalf("removed %q, want %q", removed, stale)
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed", p)
		}
	}
	if removed, err := RemoveStale(filepath.Join(t.TempDir(), "none", "x.gguf")); err != nil || removed != nil {
		t.Fatalf("missing directory: %v %v", removed, err)
	}
}
