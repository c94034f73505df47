package errata_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
)

var codeSpan = regexp.MustCompile("`([^`]+)`")

// expandBraces spells out every {a,b,c} of a role pattern as
// docs/TARGETS.md writes them: "ffn_{gate,up}_exps" is ffn_gate_exps and
// ffn_up_exps.
func expandBraces(s string) []string {
	open := strings.IndexByte(s, '{')
	if open < 0 {
		return []string{s}
	}
	end := strings.IndexByte(s[open:], '}')
	if end < 0 {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[open+1:open+end], ",") {
		out = append(out, expandBraces(s[:open]+alt+s[open+end+1:])...)
	}
	return out
}

// docSection returns the lines of docs/TARGETS.md between the heading
// "## "+title and the next "## " heading.
func docSection(t *testing.T, doc, title string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/TARGETS.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return strings.Split(rest, "\n")
}

// tableCells splits a markdown table row into its cells (nil for other
// lines and for the header and rule rows).
func tableCells(line string) []string {
	if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "|---") {
		return nil
	}
	cells := strings.Split(strings.Trim(line, "| "), " | ")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

// TestTargetsDocMatchesRoleTable holds docs/TARGETS.md to errata.Roles: the
// target table names every target role and nothing else, and the table of
// roles left out names every other role once, with the reason the code
// gives and whether --include can choose it.
func TestTargetsDocMatchesRoleTable(t *testing.T) {
	raw, err := os.ReadFile("../docs/TARGETS.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)

	documented := map[string]bool{}
	for _, line := range docSection(t, doc, "What the default selection targets") {
		cells := tableCells(line)
		if len(cells) != 2 || cells[0] == "group" {
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(cells[1], -1) {
			for _, name := range expandBraces(m[1]) {
				documented[name] = true
			}
		}
	}
	excludedRows := map[string][2]string{} // role -> reason, "never"/"flag"
	for _, line := range docSection(t, doc, "What it leaves out, and why") {
		cells := tableCells(line)
		if len(cells) != 3 || cells[0] == "roles" || !strings.HasPrefix(cells[0], "`") {
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(cells[0], -1) {
			for _, name := range expandBraces(m[1]) {
				if _, dup := excludedRows[name]; dup {
					t.Errorf("docs/TARGETS.md lists %q twice among the roles left out", name)
				}
				excludedRows[name] = [2]string{cells[1], cells[2]}
			}
		}
	}
	if len(documented) == 0 || len(excludedRows) == 0 {
		t.Fatalf("docs/TARGETS.md: read %d target and %d excluded roles; are the tables still there?",
			len(documented), len(excludedRows))
	}

	for _, r := range errata.Roles() {
		if r.Target {
			if !documented[r.Name] {
				t.Errorf("target role %q is missing from the docs' target table", r.Name)
			}
			if _, ok := excludedRows[r.Name]; ok {
				t.Errorf("target role %q is listed among the roles left out", r.Name)
			}
			delete(documented, r.Name)
			continue
		}
		row, ok := excludedRows[r.Name]
		if !ok {
			t.Errorf("role %q (not a target: %s) is missing from the docs' table of roles left out", r.Name, r.Reason)
			continue
		}
		delete(excludedRows, r.Name)
		if row[0] != r.Reason {
			t.Errorf("role %q: the docs give the reason %q, the code %q", r.Name, row[0], r.Reason)
		}
		want := "flag"
		if r.Never {
			want = "never"
		}
		if row[1] != want {
			t.Errorf("role %q: the docs say %q, the code %q", r.Name, row[1], want)
		}
	}
	for name := range documented {
		t.Errorf("the docs' target table names %q, which is not a target role", name)
	}
	for name := range excludedRows {
		t.Errorf("the docs' table of roles left out names %q, which is not in the role table", name)
	}
}
