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

	// The context sizing of llama-perplexity: Batch/CtxSize chunks side by side.
	nSeq := max(1, o.Batch/o.CtxSize)
	if nSeq > 1<<16 || int64(nSeq)*int64(o.CtxSize) > math.MaxInt32 {
		return nil, fmt.Errorf("llamacpp: ctx %d with batch %d is too large", o.CtxSize, o.Batch)
	}
	nCtx := nSeq * o.CtxSize
	batchSize := min(o.Batch, nCtx)
	if !(batchSize < o.CtxSize || batchSize%o.CtxSize == 0) {
		return nil, fmt.Errorf("llamacpp: batch %d must be below ctx %d or a multiple of it", batchSize, o.CtxSize)
	}

	res := &Result{CtxSize: o.CtxSize, Batch: batchSize, NSeq: nSeq, Threads: o.Threads}
	var members []*member
	defer func() {
		for _, mb := range members {
			mb.c.Close()
			mb.m.Close()
		}
	}()
	paths := o.Models
	if o.Base != "" {
		paths = append([]string{o.Base}, o.Models...)
		res.Base = &ModelResult{Path: o.Base}
	}
	res.Models = make([]ModelResult, len(o.Models))
	var tokens []int32
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := lib.LoadModel(p)
		if err != nil {
			return nil, err
		}
		mb := &member{m: m}
		members = append(members, mb)
		if o.Base != "" && i == 0 {
			mb.res = res.Base
		} else {
			mb.res = &res.Models[i-len(paths)+len(o.Models)]
			mb.res.Path = p
		}
		mb.res.Desc = m.Desc
		if m.AddEOS {
			return nil, fmt.Errorf("llamacpp: model %s adds EOS to every text; perplexity as llama-perplexity computes it is undefined for it", p)
		}
		toks, err := m.Tokenize(text, true, false)
		if err != nil {
			return nil, fmt.Errorf("llamacpp: tokenizing %s with %s: %w", o.TextName, p, err)
		}
		if i == 0 {
			tokens = toks
			res.Tokens = len(toks)
			if len(toks) < 2*o.CtxSize {
				return nil, fmt.Errorf("llamacpp: text %s tokenizes to only %d tokens with %s; a context of %d needs at least %d (a shorter --ctx or a longer text): %w",
					o.TextName, len(toks), p, o.CtxSize, 2*o.CtxSize, ErrText)
			}
		} else {
			first := members[0].m
			switch {
			case m.NVocab != first.NVocab:
				return nil, fmt.Errorf("llamacpp: refusing to compare %s (%d tokens in its vocabulary) with %s (%d): %w", p, m.NVocab, first.Path, first.NVocab, ErrVocabMismatch)
			case m.AddBOS != first.AddBOS || m.BOS != first.BOS:
				return nil, fmt.Errorf("llamacpp: refusing to compare %s with %s: their BOS tokens differ: %w", p, first.Path, ErrVocabMismatch)
			case !slices.Equal(toks, tokens):
				return nil, fmt.Errorf("llamacpp: refusing to compare %s with %s: they tokenize %s differently: %w", p, first.Path, o.TextName, ErrVocabMismatch)
			}
		}
		c, err := m.NewContext(ContextParams{NCtx: nCtx, NBatch: batchSize, NSeq: nSeq, Threads: o.Threads})
		if err != nil {
			return nil, err
		}
		mb.c = c
	}

	nChunk := len(tokens) / o.CtxSize
	if o.Chunks > 0 {
		nChunk = min(nChunk, o.Chunks)
	}
	first := o.CtxSize / 2
	nScore := o.CtxSize - 1 - first
	res.Chunks, res.Scored = nChunk, nChunk*nScore
	nVocab := members[0].m.NVocab
	nv := baseRowLen(nVocab)
	hasBase := o.Base != ""
	for i, mb := range members {
		if hasBase && i > 0 {
			mb.klds = make([]float32, 0, res.Scored)
			mb.pdiff = make([]float32, 0, res.Scored)
		}
	}

	var save *bufio.Writer
	if o.SaveBaseLogits != nil {
		save = bufio.NewWriterSize(o.SaveBaseLogits, 1<<20)
		hdr := []byte("_logits_")
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(o.CtxSize))
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(nVocab))
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(nChunk))
		for _, t := range tokens[:nChunk*o.CtxSize] {
			hdr = binary.LittleEndian.AppendUint32(hdr, uint32(t))
		}
		if _, err := save.Write(hdr); err != nil {
			return nil, fmt.Errorf("llamacpp: saving the base logits: %w", err)
		}
	}

	batch, err := NewBatch(batchSize)
	if err != nil {
		return nil, err
	}
	defer batch.Close()
	numBatches := (o.CtxSize + batchSize - 1) / batchSize
	var gathered []float32 // a chunk's scored rows when it spans several batches
	var baseEnc []uint16   // one chunk's encoded base rows, for SaveBaseLogits
	if save != nil {
		baseEnc = make([]uint16, nScore*nv)
	}
	var baseRows []baseRow // the base distribution of every scored token of a chunk group
	if hasBase {
		baseRows = make([]baseRow, nSeq*nScore)
		for k := range baseRows {
			baseRows[k] = baseRow{lp: make([]float32, nVocab), p: make([]float32, nVocab)}
		}
	}
	sc := newScorer(o.Threads)
	start := time.Now()
	done, total, evaluated := 0, ((nChunk+nSeq-1)/nSeq)*len(members), 0
	chunkToks := make([]int32, o.CtxSize)
	var saveBuf []byte

	for i := 0; i < nChunk; i += nSeq {
		nSeqBatch := min(nSeq, nChunk-i)
		for mi, mb := range members {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			mb.c.Clear()
			gathered = gathered[:0]
			var rows [][]float32 // per sequence, nScore rows
			for j := 0; j < numBatches; j++ {
				batch.Reset()
				bStart := j * batchSize
				bLen := min(o.CtxSize-bStart, batchSize)
				for seq := 0; seq < nSeqBatch; seq++ {
					cs := (i + seq) * o.CtxSize
					copy(chunkToks, tokens[cs:cs+o.CtxSize])
					if mb.m.AddBOS && j == 0 {
						chunkToks[0] = mb.m.BOS
					}
					if _, err := batch.Add(chunkToks[bStart:bStart+bLen], bStart, seq, first); err != nil {
						return nil, err
					}
				}
				if err := mb.c.Decode(batch); err != nil {
					return nil, fmt.Errorf("chunk %d of %s: %w", i+1, o.TextName, err)
				}
				if numBatches > 1 {
					// One sequence: its outputs are the batch's last ones.
					if nOut := bStart + bLen - max(first, bStart); nOut > 0 {
						v, err := mb.c.Rows(max(first, bStart)-bStart, nOut)
						if err != nil {
							return nil, err
						}
						gathered = append(gathered, v...)
					}
				}
			}
			for seq := 0; seq < nSeqBatch; seq++ {
				if numBatches > 1 {
					rows = append(rows, gathered[:nScore*nVocab])
					continue
				}
				v, err := mb.c.Rows(seq*o.CtxSize+first, nScore)
				if err != nil {
					return nil, err
				}
				rows = append(rows, v)
			}
			for seq, r := range rows {
				next := tokens[(i+seq)*o.CtxSize+first+1 : (i+seq)*o.CtxSize+o.CtxSize]
				if err := checkTokens(next, nVocab, mb.m.Path); err != nil {
					return nil, err
				}
				var br []baseRow
				if hasBase {
					br = baseRows[seq*nScore : (seq+1)*nScore]
				}
				switch {
				case hasBase && mi == 0:
					s, s2 := sc.setBase(r, br, next, nVocab)
					mb.nll += s
					mb.nll2 += s2
					if save != nil {
						for k := range nScore {
							encodeBaseRow(r[k*nVocab:(k+1)*nVocab], baseEnc[k*nv:(k+1)*nv], next[k])
						}
						out := saveBuf[:0]
						for _, q := range baseEnc {
							out = binary.LittleEndian.AppendUint16(out, q)
						}
						saveBuf = out
						if _, err := save.Write(out); err != nil {
							return nil, fmt.Errorf("llamacpp: saving the base logits: %w", err)
						}
					}
				case hasBase:
					s, s2 := sc.divergence(r, br, next, nVocab, &mb.kld, &mb.klds, &mb.pdiff)
					mb.nll += s
					mb.nll2 += s2
				default:
					s, s2 := sc.perplexity(r, next, nVocab)
					mb.nll += s
					mb.nll2 += s2
				}
				mb.count += nScore
			}
			mb.dur += time.Since(t0)
			done++
			evaluated += nSeqBatch * o.CtxSize
			if o.Progress != nil {
				o.Progress(Progress{Done: done, Total: total, Tokens: evaluated, Elapsed: time.Since(start)})
			}
		}
	}
	if save != nil {
		if err := save.Flush(); err != nil {
			return nil, fmt.Errorf("llamacpp: saving the base logits: %w", err)
		}
	}
	for i, mb := range members {
		mean := mb.nll / float64(mb.count)
		mb.res.PPL = math.Exp(mean)
		if v := mb.nll2/float64(mb.count) - mean*mean; v > 0 && mb.count > 1 {
			mb.res.PPLErr = math.Sqrt(v/float64(mb.count-1)) * mb.res.PPL
		}
		mb.res.Seconds = mb.dur.Seconds()
		if hasBase && i > 0 {
			d := summarize(&mb.kld, mb.klds, mb.pdiff)
			mb.res.KLD = &d
		}
	}
	return res, nil
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
