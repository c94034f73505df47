package calibrate

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/llamacpp"
)

type mode int

const (
	modeDiscover mode = iota // learn targets and inputs, accumulate nothing
	modeCollect
)

// input is one distinct activation (see the package doc).
type input struct {
	key    string // op, node name (and ids node for MUL_MAT_ID)
	name   string // the first target that reads it
	node   string // the graph node's name
	expert bool   // read by MUL_MAT_ID
	a      *acc
	index  int  // position in the graph's order of inputs
	layer  int  // the block number of the weights that read it
	active bool // the moments or the Gram are collected in this pass

	rounds  int             // graph evaluations accumulated
	roundID uintptr         // the node's address in the current evaluation
	seen    map[string]bool // targets seen in the current evaluation
}

func (in *input) gramBytes() uint64 {
	return 8 * uint64(imatrix.PackedLen(in.a.width)) * uint64(in.a.mats)
}

// target is one weight tensor seen in the graph.
type target struct {
	name   string
	in     *input
	rounds int
}

// collector is the graph evaluation callback's state.
type collector struct {
	ctx         context.Context // cancelling it stops the graph evaluation
	sel         *errata.Targets
	widths      map[string]int
	threads     int
	mode        mode
	moments     bool
	targets     map[string]*target
	targetOrder []*target
	inputs      []*input
	byKey       map[string]*input
	err         error
	checked     bool
	// stopAfter, when not negative, is the index of the last input a
	// pass needs: the graph evaluation stops at the first weight that
	// reads a later input, so a pass computes only the layers it collects.
	stopAfter int
	stopped   int // graph evaluations so stopped
	buf       []byte
	ids       []byte
	rows      []float64
	perExpert [][]float64
}

func newCollector(ctx context.Context, sel *errata.Targets, widths map[string]int, threads int) *collector {
	return &collector{ctx: ctx, sel: sel, widths: widths, threads: threads, targets: map[string]*target{}, byKey: map[string]*input{}, stopAfter: -1}
}

// weightName removes a backend prefix and copy suffix, as llama-imatrix:
// "CUDA0#blk.0.attn_k.weight#0" is "blk.0.attn_k.weight".
func weightName(s string) string {
	if _, rest, ok := strings.Cut(s, "#"); ok {
		name, _, _ := strings.Cut(rest, "#")
		return name
	}
	return s
}

// startPass prepares a pass: moments on the first, the Grams of group
// (in arena, which holds them all). A pass without the moments stops each
// graph evaluation after the group's last input.
func (c *collector) startPass(moments, gram bool, group []*input, arena []float64) {
	c.mode = modeCollect
	c.moments = moments
	c.stopAfter = -1
	inGroup := map[*input]bool{}
	for _, in := range group {
		inGroup[in] = true
		if !moments {
			c.stopAfter = max(c.stopAfter, in.index)
		}
	}
	for _, in := range c.inputs {
		in.rounds, in.roundID, in.seen = 0, 0, map[string]bool{}
		if moments {
			in.a.startMoments()
		} else {
			in.a.moments = false
		}
		if gram && inGroup[in] {
			in.a.startGram(arena)
			arena = arena[len(in.a.g):]
		}
		in.active = in.a.moments || in.a.gram
	}
	for _, t := range c.targetOrder {
		t.rounds = 0
	}
}

// check confirms that every target was seen as often as its input.
func (c *collector) check() error {
	for _, t := range c.targetOrder {
		if t.in.active && t.rounds != t.in.rounds {
			return fmt.Errorf("calibrate: %s was evaluated %d times but its input %s %d times: the inputs were not recognised consistently", t.name, t.rounds, t.in.node, t.in.rounds)
		}
	}
	return nil
}

func (c *collector) fail(err error) bool {
	if c.err == nil {
		c.err = err
	}
	return false
}

// callback is the llamacpp.TensorFunc.
func (c *collector) callback(t llamacpp.Tensor, ask bool) bool {
	if c.err == nil {
		c.err = c.ctx.Err()
	}
	if c.err != nil {
		// Ask for the next node and stop there: the rest of the decode
		// computes one node per graph evaluation instead of its batch.
		return ask
	}
	op := t.Op()
	if op != "MUL_MAT" && op != "MUL_MAT_ID" {
		return !ask
	}
	src0, ok0 := t.Src(0)
	src1, ok1 := t.Src(1)
	if !ok0 || !ok1 {
		return !ask
	}
	if !c.checked {
		if err := t.CheckLayout(); err != nil {
			return c.fail(fmt.Errorf("calibrate: %w", err))
		}
		c.checked = true
	}
	name := weightName(src0.Name())
	if _, ok := c.widths[name]; !ok || !strings.HasPrefix(name, "blk.") {
		return !ask
	}
	s1 := src1.Shape()
	if op == "MUL_MAT" && (s1[1] < 16 || src1.Type() != "f32") {
		return !ask
	}
	if c.mode == modeCollect && c.beyondPass(name) {
		// Ask for the node, then stop the evaluation when it is done.
		if !ask {
			c.stopped++
		}
		return ask
	}
	if ask {
		if c.mode == modeDiscover {
			return true
		}
		tg := c.targets[name]
		return tg != nil && tg.in.active && !c.alreadyRead(tg, src1)
	}
	if err := c.collect(t, op, name, src0, src1); err != nil {
		return c.fail(err)
	}
	return true
}

// alreadyRead reports, when llama.cpp asks whether a target's node is
// wanted, whether the input it reads was already accumulated in this
// evaluation by another target (attn_k after attn_q): then the node is not
// asked for, so llama.cpp computes it with its neighbours without stopping
// to call back, and the target is counted as seen.
func (c *collector) alreadyRead(tg *target, src1 llamacpp.Tensor) bool {
	in := tg.in
	if in.roundID != src1.ID() || in.seen[tg.name] || len(in.seen) == 0 {
		return false
	}
	in.seen[tg.name] = true
	tg.rounds++
	return true
}

// beyondPass reports whether the weight reads an input after the last one
// the pass needs.
func (c *collector) beyondPass(name string) bool {
	tg := c.targets[name]
	return c.stopAfter >= 0 && tg != nil && tg.in.index > c.stopAfter
}

func (c *collector) collect(t llamacpp.Tensor, op, name string, src0, src1 llamacpp.Tensor) error {
	s0, s1 := src0.Shape(), src1.Shape()
	if src1.Type() != "f32" {
		return fmt.Errorf("calibrate: %s reads %s of type %s, not f32", name, src1.Name(), src1.Type())
	}
	width := int(s1[0])
	if width != c.widths[name] {
		return fmt.Errorf("calibrate: %s is %d wide in the file but reads %d values per token in the graph", name, c.widths[name], width)
	}
	var ids llamacpp.Tensor
	key := op + "|" + src1.Name()
	mats := 1
	if op == "MUL_MAT_ID" {
		var ok bool
		if ids, ok = t.Src(2); !ok {
			return fmt.Errorf("calibrate: %s: MUL_MAT_ID without expert ids", name)
		}
		key += "|" + ids.Name()
		mats = int(s0[2])
	} else if s0[2]*s0[3] != 1 {
		return fmt.Errorf("calibrate: %s: a MUL_MAT weight of %d matrices is not supported", name, s0[2]*s0[3])
	}
	if c.mode == modeDiscover {
		in := c.byKey[key]
		if in == nil {
			layer, err := blockNumber(name)
			if err != nil {
				return err
			}
			in = &input{key: key, name: name, node: src1.Name(), expert: op == "MUL_MAT_ID", a: newAcc(width, mats),
				index: len(c.inputs), layer: layer}
			c.byKey[key] = in
			c.inputs = append(c.inputs, in)
		}
		if in.a.width != width || in.a.mats != mats {
			return fmt.Errorf("calibrate: %s and %s read node %s with different shapes", in.name, name, src1.Name())
		}
		if c.targets[name] == nil {
			tg := &target{name: name, in: in}
			c.targets[name] = tg
			c.targetOrder = append(c.targetOrder, tg)
		}
		return nil
	}
	tg := c.targets[name]
	in := c.byKey[key]
	if tg == nil || in == nil || tg.in != in {
		return fmt.Errorf("calibrate: %s reads node %s, which the first batch did not show", name, src1.Name())
	}
	tg.rounds++
	if in.roundID == src1.ID() && !in.seen[name] && len(in.seen) > 0 {
		in.seen[name] = true // the same node, already accumulated in this evaluation (discovery)
		return nil
	}
	clear(in.seen)
	in.seen[name] = true
	in.roundID = src1.ID()
	in.rounds++
	return c.accumulate(in, src1, ids, name)
}

// blockNumber returns N of a weight named "blk.N. ...".
func blockNumber(name string) (int, error) {
	num, _, _ := strings.Cut(strings.TrimPrefix(name, "blk."), ".")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("calibrate: %s: no block number in the name", name)
	}
	return n, nil
}

// read copies a graph tensor's data into buf (reused).
func read(t llamacpp.Tensor, buf *[]byte) ([]byte, error) {
	n := t.Bytes()
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	return b, t.Read(b)
}

func (c *collector) accumulate(in *input, src1, ids llamacpp.Tensor, name string) error {
	data, err := read(src1, &c.buf)
	if err != nil {
		return err
	}
	s1, nb := src1.Shape(), src1.Strides()
	w := int(s1[0])
	if nb[0] != 4 {
		return fmt.Errorf("calibrate: %s: input %s is not contiguous along its rows", name, src1.Name())
	}
	row := func(i1, i2, i3 int64) []byte {
		o := uint64(i1)*nb[1] + uint64(i2)*nb[2] + uint64(i3)*nb[3]
		return data[o : o+uint64(4*w)]
	}
	if !in.expert {
		n := int(s1[1] * s1[2] * s1[3])
		if cap(c.rows) < n*w {
			c.rows = make([]float64, n*w)
		}
		rows := c.rows[:n*w]
		k := 0
		for i3 := range s1[3] {
			for i2 := range s1[2] {
				for i1 := range s1[1] {
					f32s(rows[k*w:(k+1)*w], row(i1, i2, i3))
					k++
				}
			}
		}
		c.add(in, 0, rows)
		return nil
	}
	// MUL_MAT_ID: ids [n_used, n_tokens] (i32, maybe a view), src1
	// [w, n_used or 1, n_tokens]; each (token, chosen expert) is a row of
	// that expert.
	idb, err := read(ids, &c.ids)
	if err != nil {
		return err
	}
	is, inb := ids.Shape(), ids.Strides()
	if ids.Type() != "i32" || is[1] != s1[2] {
		return fmt.Errorf("calibrate: %s: expert ids %s (%s %v) do not match its input %v", name, ids.Name(), ids.Type(), is, s1)
	}
	mats := in.a.mats
	if len(c.perExpert) < mats {
		c.perExpert = make([][]float64, mats)
	}
	for e := range c.perExpert {
		c.perExpert[e] = c.perExpert[e][:0]
	}
	for idx := range is[0] {
		for tok := range s1[2] {
			ex := int32(binary.LittleEndian.Uint32(idb[uint64(tok)*inb[1]+uint64(idx)*inb[0]:]))
			if ex < 0 || int(ex) >= mats {
				return fmt.Errorf("calibrate: %s: expert id %d outside 0..%d", name, ex, mats-1)
			}
			i11 := idx % s1[1]
			p := c.perExpert[ex]
			k := len(p)
			p = slices.Grow(p, w)[:k+w]
			f32s(p[k:], row(i11, tok, 0))
			c.perExpert[ex] = p
		}
	}
	for e := range mats {
		if len(c.perExpert[e]) > 0 {
			c.add(in, e, c.perExpert[e])
		}
	}
	return nil
}

func (c *collector) add(in *input, mat int, rows []float64) {
	if in.a.moments {
		in.a.addMoments(mat, rows)
	}
	if in.a.gram {
		in.a.addGram(mat, rows, c.threads)
	}
}
