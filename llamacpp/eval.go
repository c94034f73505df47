package llamacpp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Options configures Evaluate.
type Options struct {
	// Models are the GGUF files to evaluate, one result each.
	Models []string
	// Base, when set, is the reference (dense) model: each model's KL
	// divergence from it is measured on the same tokens.
	Base string
	// Text is the evaluation text, as read from its file; one trailing
	// newline is dropped, as llama-perplexity's -f does.
	Text []byte
	// TextName names the text in errors.
	TextName string
	// CtxSize is the chunk length in tokens (llama-perplexity's -c; 512 if 0).
	CtxSize int
	// Batch is the logical batch size (llama-perplexity's -b; 2048 if 0).
	Batch int
	// Chunks limits the number of chunks scored (0: all).
	Chunks int
	// Threads is the number of threads for the forward pass and the scoring
	// (must be positive).
	Threads int
	// SaveBaseLogits, when set, receives the base model's encoded
	// log-probabilities in llama-perplexity's --kl-divergence-base format.
	SaveBaseLogits io.Writer
	// Progress, when set, is called after each chunk of each model.
	Progress func(Progress)
}

// Progress reports how far Evaluate has come.
type Progress struct {
	// Done and Total count chunk evaluations (chunks times models, the base
	// included).
	Done, Total int
	// Tokens is the number of tokens evaluated so far.
	Tokens int
	// Elapsed is the time since the evaluation began.
	Elapsed time.Duration
}

// Result is the outcome of one evaluation run.
type Result struct {
	// Tokens is the number of tokens the whole text tokenizes to (BOS included).
	Tokens int
	// CtxSize, Batch, NSeq and Threads are the settings used; NSeq chunks
	// are evaluated side by side when Batch >= 2*CtxSize.
	CtxSize, Batch, NSeq, Threads int
	// Chunks is the number of chunks evaluated; Scored the number of tokens
	// whose likelihood was scored (the second half of each chunk).
	Chunks, Scored int
	// Base is the base model's result, when Options.Base was set.
	Base *ModelResult
	// Models holds one result per Options.Models, in order.
	Models []ModelResult
}

// ModelResult is one model's evaluation.
type ModelResult struct {
	// Path is the model file.
	Path string
	// Desc is llama.cpp's description of the model.
	Desc string
	// PPL and PPLErr are the perplexity and its "+/-", as llama-perplexity.
	PPL, PPLErr float64
	// Seconds is the time spent evaluating and scoring this model.
	Seconds float64
	// KLD is the divergence from the base model (nil without one).
	KLD *Divergence
}

// TokensPerSecond is the number of tokens evaluated per second.
func (r ModelResult) TokensPerSecond(res *Result) float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(res.Chunks*res.CtxSize) / r.Seconds
}

// ErrVocabMismatch is wrapped by Evaluate's error when the models do not
// share one vocabulary (their tokens cannot be compared).
var ErrVocabMismatch = errors.New("the models' vocabularies differ")

// ErrText is wrapped by Evaluate's error when the text is unusable (empty,
// binary, or too short for one pair of chunks).
var ErrText = errors.New("unusable evaluation text")

// CheckText refuses an empty or binary text.
func CheckText(name string, text []byte) error {
	if len(bytes.TrimSpace(text)) == 0 {
		return fmt.Errorf("llamacpp: text %s is empty: %w", name, ErrText)
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return fmt.Errorf("llamacpp: text %s is binary (a NUL byte at offset %d): %w", name, i, ErrText)
	}
	if !utf8.Valid(text) {
		return fmt.Errorf("llamacpp: text %s is not UTF-8: %w", name, ErrText)
	}
	return nil
}

// member is one loaded model taking part in the run.
type member struct {
	m     *Model
	c     *Context
	res   *ModelResult
	nll   float64
	nll2  float64
	count int
	kld   kldAcc
	klds  []float32
	pdiff []float32
	dur   time.Duration
}

// Evaluate measures the perplexity of each model over the text exactly as
// llama.cpp's llama-perplexity does (chunks of CtxSize tokens, BOS at each
// chunk start when the vocabulary adds one, the second half of each chunk
// scored) and, with a base model, llama-perplexity's --kl-divergence
// statistics of each model against it. All models are evaluated chunk by
// chunk in lockstep, so the base model's log-probabilities are held for one
// chunk group at a time. It writes nothing but SaveBaseLogits.
func Evaluate(ctx context.Context, lib *Library, o Options) (*Result, error) {
	text, err := checkOptions(&o)
	if err != nil {
		return nil, err
	}
	r := &evalRun{o: o, text: text, hasBase: o.Base != ""}
	if err := r.sizeContext(); err != nil {
		return nil, err
	}
	defer r.closeMembers()
	if err := r.openModels(ctx, lib); err != nil {
		return nil, err
	}
	r.planChunks()
	if err := r.startSave(); err != nil {
		return nil, err
	}
	batch, err := NewBatch(r.batchSize)
	if err != nil {
		return nil, err
	}
	defer batch.Close()
	r.batch = batch
	r.allocScratch()
	for i := 0; i < r.nChunk; i += r.nSeq {
		if err := r.evalGroup(ctx, i); err != nil {
			return nil, err
		}
	}
	if r.save != nil {
		if err := r.save.Flush(); err != nil {
			return nil, fmt.Errorf("llamacpp: saving the base logits: %w", err)
		}
	}
	r.fillResults()
	return r.res, nil
}

// evalRun is the state of one Evaluate call, from its settings to the
// scratch buffers of the chunk loop.
type evalRun struct {
	o       Options
	text    []byte // the text without its trailing newline
	hasBase bool

	nSeq, nCtx, batchSize int
	res                   *Result
	members               []*member
	tokens                []int32

	nChunk, first, nScore int // chunks scored; first scored position; rows scored per chunk
	nVocab, nv            int // vocabulary size; encoded base row length
	numBatches            int // batches per chunk

	save      *bufio.Writer
	batch     *Batch
	gathered  []float32 // a chunk's scored rows when it spans several batches
	baseEnc   []uint16  // one chunk's encoded base rows, for SaveBaseLogits
	baseRows  []baseRow // the base distribution of every scored token of a chunk group
	saveBuf   []byte
	chunkToks []int32
	sc        *scorer

	start                  time.Time
	done, total, evaluated int
}

// checkOptions fills in the default sizes, refuses bad settings and an
// unusable text, and returns the text without one trailing newline.
func checkOptions(o *Options) ([]byte, error) {
	if len(o.Models) == 0 {
		return nil, errors.New("llamacpp: no model to evaluate")
	}
	if o.CtxSize == 0 {
		o.CtxSize = 512
	}
	if o.Batch == 0 {
		o.Batch = 2048
	}
	if o.CtxSize < 4 || o.Batch < 1 || o.Chunks < 0 || o.Threads < 1 {
		return nil, fmt.Errorf("llamacpp: bad settings: ctx %d (want >= 4), batch %d, chunks %d, threads %d", o.CtxSize, o.Batch, o.Chunks, o.Threads)
	}
	if o.SaveBaseLogits != nil && o.Base == "" {
		return nil, errors.New("llamacpp: saving the base logits needs a base model")
	}
	if err := CheckText(o.TextName, o.Text); err != nil {
		return nil, err
	}
	text := o.Text
	if text[len(text)-1] == '\n' {
		text = text[:len(text)-1]
	}
	return text, nil
}

// sizeContext sizes the context as llama-perplexity does: Batch/CtxSize
// chunks side by side.
func (r *evalRun) sizeContext() error {
	o := &r.o
	r.nSeq = max(1, o.Batch/o.CtxSize)
	if r.nSeq > 1<<16 || int64(r.nSeq)*int64(o.CtxSize) > math.MaxInt32 {
		return fmt.Errorf("llamacpp: ctx %d with batch %d is too large", o.CtxSize, o.Batch)
	}
	r.nCtx = r.nSeq * o.CtxSize
	r.batchSize = min(o.Batch, r.nCtx)
	if !(r.batchSize < o.CtxSize || r.batchSize%o.CtxSize == 0) {
		return fmt.Errorf("llamacpp: batch %d must be below ctx %d or a multiple of it", r.batchSize, o.CtxSize)
	}
	r.res = &Result{CtxSize: o.CtxSize, Batch: r.batchSize, NSeq: r.nSeq, Threads: o.Threads}
	return nil
}

// closeMembers frees every model and context loaded so far.
func (r *evalRun) closeMembers() {
	for _, mb := range r.members {
		mb.c.Close()
		mb.m.Close()
	}
}

// openModels loads the base model (first, when set) and every model,
// tokenizes the text with each, checks that they agree on the tokens, and
// gives each a context.
func (r *evalRun) openModels(ctx context.Context, lib *Library) error {
	o := &r.o
	paths := o.Models
	if r.hasBase {
		paths = append([]string{o.Base}, o.Models...)
		r.res.Base = &ModelResult{Path: o.Base}
	}
	r.res.Models = make([]ModelResult, len(o.Models))
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := lib.LoadModel(p)
		if err != nil {
			return err
		}
		mb := &member{m: m}
		r.members = append(r.members, mb)
		if r.hasBase && i == 0 {
			mb.res = r.res.Base
		} else {
			mb.res = &r.res.Models[i-len(paths)+len(o.Models)]
			mb.res.Path = p
		}
		mb.res.Desc = m.Desc
		if err := r.checkTokenization(i, m); err != nil {
			return err
		}
		c, err := m.NewContext(ContextParams{NCtx: r.nCtx, NBatch: r.batchSize, NSeq: r.nSeq, Threads: o.Threads})
		if err != nil {
			return err
		}
		mb.c = c
	}
	return nil
}

// checkTokenization tokenizes the text with the i-th model: the first sets
// the tokens (and must give at least two chunks), every other must share
// its vocabulary, BOS and tokens.
func (r *evalRun) checkTokenization(i int, m *Model) error {
	o := &r.o
	p := m.Path
	if m.AddEOS {
		return fmt.Errorf("llamacpp: model %s adds EOS to every text; perplexity as llama-perplexity computes it is undefined for it", p)
	}
	toks, err := m.Tokenize(r.text, true, false)
	if err != nil {
		return fmt.Errorf("llamacpp: tokenizing %s with %s: %w", o.TextName, p, err)
	}
	if i == 0 {
		r.tokens = toks
		r.res.Tokens = len(toks)
		if len(toks) < 2*o.CtxSize {
			return fmt.Errorf("llamacpp: text %s tokenizes to only %d tokens with %s; a context of %d needs at least %d (a shorter --ctx or a longer text): %w",
				o.TextName, len(toks), p, o.CtxSize, 2*o.CtxSize, ErrText)
		}
		return nil
	}
	first := r.members[0].m
	switch {
	case m.NVocab != first.NVocab:
		return fmt.Errorf("llamacpp: refusing to compare %s (%d tokens in its vocabulary) with %s (%d): %w", p, m.NVocab, first.Path, first.NVocab, ErrVocabMismatch)
	case m.AddBOS != first.AddBOS || m.BOS != first.BOS:
		return fmt.Errorf("llamacpp: refusing to compare %s with %s: their BOS tokens differ: %w", p, first.Path, ErrVocabMismatch)
	case !slices.Equal(toks, r.tokens):
		return fmt.Errorf("llamacpp: refusing to compare %s with %s: they tokenize %s differently: %w", p, first.Path, o.TextName, ErrVocabMismatch)
	}
	return nil
}

// planChunks counts the chunks and the scored tokens and makes room for
// each compared model's per-token divergences.
func (r *evalRun) planChunks() {
	o := &r.o
	r.nChunk = len(r.tokens) / o.CtxSize
	if o.Chunks > 0 {
		r.nChunk = min(r.nChunk, o.Chunks)
	}
	r.first = o.CtxSize / 2
	r.nScore = o.CtxSize - 1 - r.first
	r.res.Chunks, r.res.Scored = r.nChunk, r.nChunk*r.nScore
	r.nVocab = r.members[0].m.NVocab
	r.nv = baseRowLen(r.nVocab)
	for i, mb := range r.members {
		if r.hasBase && i > 0 {
			mb.klds = make([]float32, 0, r.res.Scored)
			mb.pdiff = make([]float32, 0, r.res.Scored)
		}
	}
}

// startSave writes the header of llama-perplexity's --kl-divergence-base
// file (magic, ctx, vocabulary, chunks and the tokens) when saving.
func (r *evalRun) startSave() error {
	o := &r.o
	if o.SaveBaseLogits == nil {
		return nil
	}
	r.save = bufio.NewWriterSize(o.SaveBaseLogits, 1<<20)
	hdr := []byte("_logits_")
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(o.CtxSize))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(r.nVocab))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(r.nChunk))
	for _, t := range r.tokens[:r.nChunk*o.CtxSize] {
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(t))
	}
	if _, err := r.save.Write(hdr); err != nil {
		return fmt.Errorf("llamacpp: saving the base logits: %w", err)
	}
	return nil
}

// allocScratch makes the chunk loop's buffers and starts the clock.
func (r *evalRun) allocScratch() {
	r.numBatches = (r.o.CtxSize + r.batchSize - 1) / r.batchSize
	if r.save != nil {
		r.baseEnc = make([]uint16, r.nScore*r.nv)
	}
	if r.hasBase {
		r.baseRows = make([]baseRow, r.nSeq*r.nScore)
		for k := range r.baseRows {
			r.baseRows[k] = baseRow{lp: make([]float32, r.nVocab), p: make([]float32, r.nVocab)}
		}
	}
	r.sc = newScorer(r.o.Threads)
	r.start = time.Now()
	r.total = ((r.nChunk + r.nSeq - 1) / r.nSeq) * len(r.members)
	r.chunkToks = make([]int32, r.o.CtxSize)
}

// evalGroup evaluates the chunk group starting at chunk i (up to NSeq
// chunks side by side) with every model in turn, the base model first.
func (r *evalRun) evalGroup(ctx context.Context, i int) error {
	nSeqBatch := min(r.nSeq, r.nChunk-i)
	for mi, mb := range r.members {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		rows, err := r.decodeGroup(mb, i, nSeqBatch)
		if err != nil {
			return err
		}
		for seq, row := range rows {
			if err := r.scoreChunk(mi, mb, i+seq, seq, row); err != nil {
				return err
			}
		}
		mb.dur += time.Since(t0)
		r.done++
		r.evaluated += nSeqBatch * r.o.CtxSize
		if r.o.Progress != nil {
			r.o.Progress(Progress{Done: r.done, Total: r.total, Tokens: r.evaluated, Elapsed: time.Since(r.start)})
		}
	}
	return nil
}

// decodeGroup runs one model over the chunks of a group and returns, per
// chunk, the logits of its scored rows (nScore rows of nVocab).
func (r *evalRun) decodeGroup(mb *member, i, nSeqBatch int) ([][]float32, error) {
	o := &r.o
	mb.c.Clear()
	r.gathered = r.gathered[:0]
	for j := 0; j < r.numBatches; j++ {
		r.batch.Reset()
		bStart := j * r.batchSize
		bLen := min(o.CtxSize-bStart, r.batchSize)
		for seq := 0; seq < nSeqBatch; seq++ {
			cs := (i + seq) * o.CtxSize
			copy(r.chunkToks, r.tokens[cs:cs+o.CtxSize])
			if mb.m.AddBOS && j == 0 {
				r.chunkToks[0] = mb.m.BOS
			}
			if _, err := r.batch.Add(r.chunkToks[bStart:bStart+bLen], bStart, seq, r.first); err != nil {
				return nil, err
			}
		}
		if err := mb.c.Decode(r.batch); err != nil {
			return nil, fmt.Errorf("chunk %d of %s: %w", i+1, o.TextName, err)
		}
		if r.numBatches > 1 {
			// One sequence: its outputs are the batch's last ones.
			if nOut := bStart + bLen - max(r.first, bStart); nOut > 0 {
				v, err := mb.c.Rows(max(r.first, bStart)-bStart, nOut)
				if err != nil {
					return nil, err
				}
				r.gathered = append(r.gathered, v...)
			}
		}
	}
	var rows [][]float32 // per sequence, nScore rows
	for seq := 0; seq < nSeqBatch; seq++ {
		if r.numBatches > 1 {
			rows = append(rows, r.gathered[:r.nScore*r.nVocab])
			continue
		}
		v, err := mb.c.Rows(seq*o.CtxSize+r.first, r.nScore)
		if err != nil {
			return nil, err
		}
		rows = append(rows, v)
	}
	return rows, nil
}

// scoreChunk scores one chunk's rows for the mi-th model: the base model
// keeps its distributions (and saves them), a compared model is scored
// against them, and without a base only the perplexity is summed.
func (r *evalRun) scoreChunk(mi int, mb *member, chunk, seq int, rows []float32) error {
	cs := chunk * r.o.CtxSize
	next := r.tokens[cs+r.first+1 : cs+r.o.CtxSize]
	if err := checkTokens(next, r.nVocab, mb.m.Path); err != nil {
		return err
	}
	var br []baseRow
	if r.hasBase {
		br = r.baseRows[seq*r.nScore : (seq+1)*r.nScore]
	}
	var s, s2 float64
	switch {
	case r.hasBase && mi == 0:
		s, s2 = r.sc.setBase(rows, br, next, r.nVocab)
		if err := r.saveBase(rows, next); err != nil {
			return err
		}
	case r.hasBase:
		s, s2 = r.sc.divergence(rows, br, next, r.nVocab, &mb.kld, &mb.klds, &mb.pdiff)
	default:
		s, s2 = r.sc.perplexity(rows, next, r.nVocab)
	}
	mb.nll += s
	mb.nll2 += s2
	mb.count += r.nScore
	return nil
}

// saveBase encodes one chunk of base rows and writes them to
// SaveBaseLogits, when saving.
func (r *evalRun) saveBase(rows []float32, next []int32) error {
	if r.save == nil {
		return nil
	}
	nVocab, nv := r.nVocab, r.nv
	for k := range r.nScore {
		encodeBaseRow(rows[k*nVocab:(k+1)*nVocab], r.baseEnc[k*nv:(k+1)*nv], next[k])
	}
	out := r.saveBuf[:0]
	for _, q := range r.baseEnc {
		out = binary.LittleEndian.AppendUint16(out, q)
	}
	r.saveBuf = out
	if _, err := r.save.Write(out); err != nil {
		return fmt.Errorf("llamacpp: saving the base logits: %w", err)
	}
	return nil
}

// fillResults turns each model's sums into its perplexity, time and
// divergence.
func (r *evalRun) fillResults() {
	for i, mb := range r.members {
		mean := mb.nll / float64(mb.count)
		mb.res.PPL = math.Exp(mean)
		if v := mb.nll2/float64(mb.count) - mean*mean; v > 0 && mb.count > 1 {
			mb.res.PPLErr = math.Sqrt(v/float64(mb.count-1)) * mb.res.PPL
		}
		mb.res.Seconds = mb.dur.Seconds()
		if r.hasBase && i > 0 {
			d := summarize(&mb.kld, mb.klds, mb.pdiff)
			mb.res.KLD = &d
		}
	}
}

func checkTokens(toks []int32, nVocab int, model string) error {
	for _, t := range toks {
		if t < 0 || int(t) >= nVocab {
			return fmt.Errorf("llamacpp: token %d out of range for the vocabulary of %s (%d tokens)", t, model, nVocab)
		}
	}
	return nil
}

// scorer spreads the rows of one chunk over worker goroutines; each worker
// sums its own contiguous share and the shares are added in order, so a run
// is deterministic for a given number of threads.
type scorer struct{ workers int }

func newScorer(n int) *scorer { return &scorer{workers: max(1, n)} }

// split calls f(lo, hi, w) for each worker's share of n rows, concurrently.
func (s *scorer) split(n int, f func(lo, hi, w int)) {
	w := min(s.workers, n)
	if w <= 1 {
		f(0, n, 0)
		return
	}
	var wg sync.WaitGroup
	for k := range w {
		lo, hi := n*k/w, n*(k+1)/w
		wg.Add(1)
		go func() { defer wg.Done(); f(lo, hi, k) }()
	}
	wg.Wait()
}

// nllSums returns the sum and the sum of squares of nll(k) over k < n,
// each worker summing its own share.
func (s *scorer) nllSums(n int, nll func(k int) float64) (float64, float64) {
	sums := make([][2]float64, s.workers)
	s.split(n, func(lo, hi, w int) {
		var a, b float64
		for k := lo; k < hi; k++ {
			v := nll(k)
			a += v
			b += v * v
		}
		sums[w] = [2]float64{a, b}
	})
	var a, b float64
	for _, x := range sums {
		a += x[0]
		b += x[1]
	}
	return a, b
}

// perplexity returns the NLL sums of next[k] under row k, for every row.
func (s *scorer) perplexity(rows []float32, next []int32, nVocab int) (float64, float64) {
	return s.nllSums(len(next), func(k int) float64 { return rowNLL(rows[k*nVocab:(k+1)*nVocab], next[k]) })
}

// setBase stores the base model's distributions of the rows in base and
// returns its NLL sums.
func (s *scorer) setBase(rows []float32, base []baseRow, next []int32, nVocab int) (float64, float64) {
	return s.nllSums(len(next), func(k int) float64 { return base[k].set(rows[k*nVocab:(k+1)*nVocab], next[k]) })
}

// divergence scores rows against the base distributions, adding to acc and
// appending the per-token values; it returns the perplexity NLL sums.
func (s *scorer) divergence(rows []float32, base []baseRow, next []int32, nVocab int, acc *kldAcc, klds, pdiffs *[]float32) (float64, float64) {
	n := len(next)
	accs := make([]kldAcc, s.workers)
	sums := make([][2]float64, s.workers)
	off := len(*klds)
	*klds = append(*klds, make([]float32, n)...)
	*pdiffs = append(*pdiffs, make([]float32, n)...)
	kv, pv := (*klds)[off:], (*pdiffs)[off:]
	s.split(n, func(lo, hi, w int) {
		var a, b float64
		scratch := make([]float32, nVocab)
		for k := lo; k < hi; k++ {
			kl, pd, v := kldRow(rows[k*nVocab:(k+1)*nVocab], &base[k], next[k], scratch, &accs[w])
			kv[k], pv[k] = float32(kl), pd
			a += v
			b += v * v
		}
		sums[w] = [2]float64{a, b}
	})
	var a, b float64
	for w := range accs {
		acc.add(&accs[w])
		a += sums[w][0]
		b += sums[w][1]
	}
	return a, b
}
