package testmodels

import "fmt"

// Token types as llama.cpp's SPM vocabulary stores them in
// tokenizer.ggml.token_type.
const (
	tokenNormal  int32 = 1
	tokenUnknown int32 = 2
	tokenControl int32 = 3
	tokenByte    int32 = 6
)

// MinVocab is the smallest vocabulary Write accepts: <unk>, <s>, </s> and
// the 256 byte-fallback tokens, enough to tokenize any text.
const MinVocab = 3 + 256

// spmSpace is the SentencePiece word-boundary marker that replaces spaces.
const spmSpace = "▁"

// commonWords seed the word pieces of the built-in vocabulary. Each word
// contributes "▁" + every prefix of it, so that SPM's pairwise merges can
// always reach the whole word from single characters.
var commonWords = []string{
	"the", "and", "to", "a", "was", "he", "she", "it", "of", "in", "they",
	"said", "her", "his", "you", "with", "that", "on", "day", "one", "had",
	"for", "big", "so", "play", "happy", "time", "were", "is", "mom", "very",
	"but", "saw", "then", "what", "little", "upon", "there", "once", "friend",
	"not", "wanted", "all", "went", "are", "we", "be", "at", "do", "up",
	"can", "have", "go", "see", "like", "to", "from", "out", "an", "by",
	"this", "will", "would", "could", "about", "into", "when", "them",
	"their", "some", "more", "other", "time", "him", "me", "my", "no", "if",
	"as", "or", "how", "who", "did", "get", "got", "made", "make", "look",
	"looked", "home", "tree", "dog", "cat", "bird", "ball", "park", "sun",
	"fun", "love", "good", "new", "old", "red", "blue", "girl", "boy",
}

// commonSuffixes are word-internal pieces (no "▁"), added with their
// prefixes too.
var commonSuffixes = []string{"ing", "ed", "er", "ly", "es", "en", "th", "he", "in", "an", "on", "re", "nd", "at", "ou"}

// singleChars are the one-character pieces, after "▁".
const singleChars = "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,!?'\"-:;()"

// vocabulary returns a deterministic SPM vocabulary of exactly n tokens
// (n >= MinVocab): <unk>, <s>, </s>, <0x00>..<0xFF>, then "▁", single
// characters, word pieces and, when those run out, every lower-case string
// of length 2, 3, ... in order. Scores are 0 for the special and byte tokens
// and -i for the i-th piece, as in stories260K.
func vocabulary(n int) (tokens []string, scores []float32, types []int32) {
	tokens = make([]string, 0, n)
	scores = make([]float32, 0, n)
	types = make([]int32, 0, n)
	seen := make(map[string]bool, n)
	add := func(tok string, score float32, typ int32) {
		if len(tokens) >= n || seen[tok] {
			return
		}
		seen[tok] = true
		tokens = append(tokens, tok)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, tokenUnknown)
	add("<s>", 0, tokenControl)
	add("</s>", 0, tokenControl)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), 0, tokenByte)
	}
	piece := 0
	addPiece := func(p string) {
		if seen[p] {
			return
		}
		add(p, -float32(piece), tokenNormal)
		piece++
	}
	addPiece(spmSpace)
	for _, c := range singleChars {
		addPiece(string(c))
	}
	for _, w := range commonWords {
		for k := 1; k <= len(w); k++ {
			addPiece(spmSpace + w[:k])
		}
	}
	for _, s := range commonSuffixes {
		for k := 2; k <= len(s); k++ {
			addPiece(s[:k])
		}
	}
	// Fill the rest with every lower-case string of length 2, 3, ...
	buf := make([]byte, 0, 8)
	for length := 2; len(tokens) < n; length++ {
		buf = buf[:length]
		for i := range buf {
			buf[i] = 'a'
		}
		for len(tokens) < n {
			addPiece(string(buf))
			i := length - 1
			for i >= 0 && buf[i] == 'z' {
				buf[i] = 'a'
				i--
			}
			if i < 0 {
				break
			}
			buf[i]++
		}
	}
	return tokens, scores, types
}
