package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// The keys of a model split into shards, as llama.cpp's llama-gguf-split
// writes them into every shard and llama.cpp's model loader reads them.
const (
	// SplitNoKey is the 0-based number of the shard (UINT16).
	SplitNoKey = "split.no"
	// SplitCountKey is the number of shards (UINT16); a model loads as
	// split when it is over 1.
	SplitCountKey = "split.count"
	// SplitTensorsKey is the number of tensors of the whole model (INT32).
	SplitTensorsKey = "split.tensors.count"
	// SplitPrefix is the prefix of the split keys.
	SplitPrefix = "split."
)

// MaxShards is the largest shard count: split.count is a UINT16.
const MaxShards = 1<<16 - 1

// SplitPath returns the path of shard no (0-based) of count shards with the
// given prefix, by llama.cpp's rule (llama_split_path):
// "<prefix>-<no+1, 5 digits>-of-<count, 5 digits>.gguf".
func SplitPath(prefix string, no, count int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.gguf", prefix, no+1, count)
}

// SplitName parses a shard's path by llama.cpp's rule: it returns the
// prefix, the 0-based shard number and the shard count of a path that ends
// in "-NNNNN-of-MMMMM.gguf" (five digits or more each, as llama.cpp prints
// them), and false for any other path.
func SplitName(path string) (prefix string, no, count int, ok bool) {
	rest, found := strings.CutSuffix(path, ".gguf")
	if !found {
		return "", 0, 0, false
	}
	i := strings.LastIndex(rest, "-of-")
	if i < 0 {
		return "", 0, 0, false
	}
	cs := rest[i+len("-of-"):]
	head := rest[:i]
	j := strings.LastIndexByte(head, '-')
	if j < 0 {
		return "", 0, 0, false
	}
	ns := head[j+1:]
	n, err1 := strconv.Atoi(ns)
	c, err2 := strconv.Atoi(cs)
	if err1 != nil || err2 != nil || len(ns) < 5 || len(cs) < 5 || !allDigits(ns) || !allDigits(cs) ||
		n < 1 || c < 1 || n > c || c > MaxShards {
		return "", 0, 0, false
	}
	prefix = head[:j]
	// The rule prints the numbers back; a path that does not come out the
	// same (leading zeros past five digits) is not one of its names.
	if prefix == "" || SplitPath(prefix, n-1, c) != path {
		return "", 0, 0, false
	}
	return prefix, n - 1, c, true
}

// splitKeys reads a shard's split.no, split.count and split.tensors.count:
// each as the type llama.cpp reads it, has says which are present.
func splitKeys(f *File) (no, count uint16, tensors int32, has [3]bool, err error) {
	get := func(key string, t ValueType, i int) (Value, error) {
		kv, ok := f.KV(key)
		if !ok {
			return Value{}, nil
		}
		if kv.Value.Type != t {
			return Value{}, fmt.Errorf("gguf: %s: key %s is of type %s, llama.cpp reads it as %s", f.Path, key, kv.Value.Type, t)
		}
		has[i] = true
		return kv.Value, nil
	}
	v, err := get(SplitNoKey, TypeUint16, 0)
	if err != nil {
		return 0, 0, 0, has, err
	}
	if has[0] {
		no = v.Data.(uint16)
	}
	if v, err = get(SplitCountKey, TypeUint16, 1); err != nil {
		return 0, 0, 0, has, err
	}
	if has[1] {
		count = v.Data.(uint16)
	}
	if v, err = get(SplitTensorsKey, TypeInt32, 2); err != nil {
		return 0, 0, 0, has, err
	}
	if has[2] {
		tensors = v.Data.(int32)
	}
	return no, count, tensors, has, nil
}

// ShardKeys returns the split keys of shard no of count shards of a model
// of tensors tensors, typed as llama.cpp reads them.
func ShardKeys(no, count, tensors int) []KV {
	return []KV{
		{Key: SplitNoKey, Value: Uint16(uint16(no))},
		{Key: SplitCountKey, Value: Uint16(uint16(count))},
		{Key: SplitTensorsKey, Value: Int32(int32(tensors))},
	}
}
