//go:build ignore

// Command iqsearchgen writes quantize/iq_search.bin, the search tables of
// ggml's IQ grid encoders (package iqlattice), built from the grids in
// quantize/iq_tables.go (which internal/iqgen reads back from ggml's
// decoders). Run from the quantize directory:
//
//	go run internal/iqsearchgen/main.go -tables iq_tables.go -o iq_search.bin
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"

	"github.com/physarium/physarium-gguf/quantize/internal/iqlattice"
)

func main() {
	tables := flag.String("tables", "iq_tables.go", "the Go file holding the grids")
	out := flag.String("o", "iq_search.bin", "the file to write")
	flag.Parse()
	grids, err := readGrids(*tables)
	if err != nil {
		fail(err)
	}
	data, err := iqlattice.Encode(grids)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fail(err)
	}
}

// readGrids returns iqlattice.Shapes with the entries of the array
// variables of the same names in the Go file path.
func readGrids(path string) ([]iqlattice.Grid, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return nil, err
	}
	found := map[string][]uint64{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Names) != 1 || len(vs.Values) != 1 {
				continue
			}
			lit, ok := vs.Values[0].(*ast.CompositeLit)
			if !ok {
				continue
			}
			var entries []uint64
			for _, e := range lit.Elts {
				bl, ok := e.(*ast.BasicLit)
				if !ok || bl.Kind != token.INT {
					entries = nil
					break
				}
				v, err := strconv.ParseUint(bl.Value, 0, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", path, vs.Names[0].Name, err)
				}
				entries = append(entries, v)
			}
			found[vs.Names[0].Name] = entries
		}
	}
	grids := make([]iqlattice.Grid, len(iqlattice.Shapes))
	for i, g := range iqlattice.Shapes {
		g.Entries = found[g.Name]
		if len(g.Entries) == 0 {
			return nil, fmt.Errorf("%s: no grid %s", path, g.Name)
		}
		grids[i] = g
	}
	return grids, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "iqsearchgen:", err)
	os.Exit(1)
}
