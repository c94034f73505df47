package errata

import (
	"strings"
)

// A tensor role is the part of a tensor name that says what the tensor does:
// the name with the block prefix "blk.N.", the parameter suffix (".weight",
// ".bias") and every other index replaced by %d, in the spelling of
// llama.cpp's tensor-name table (src/llama-arch.cpp, LLM_TENSOR_NAMES): "attn_q",
// "ffn_down_exps", "ffn_gate.%d", "enc.blk.%d.attn_o", "output".

// Role groups.
const (
	GroupAttention   = "attention"
	GroupFeedForward = "feed-forward"
	GroupStateSpace  = "state-space"
	GroupRWKV        = "rwkv"
	GroupOther       = "other"
)

// Role is one row of the role table: a projection role of llama.cpp and
// whether the default selection targets it.
type Role struct {
	Name   string // the role, e.g. "attn_q"
	Group  string // GroupAttention, GroupFeedForward, ...
	Target bool   // the default pattern chooses its weights
	// Never says that no --include can choose it (routers, output heads).
	Never bool
	// Reason says why it is not a target; empty for targets.
	Reason string
}

// Reasons of the roles that are not targets.
const (
	reasonRouter   = "MoE router: it picks the experts, and a zeroed logit changes which experts run"
	reasonHead     = "output head: its rows are the vocabulary's logits (or a classifier's), not a block's projection"
	reasonScan     = "selective-scan step and B/C projection: a low-rank input whose outputs pass through softplus and exp into the state's decay"
	reasonStateGt  = "gate, decay or step projection of a recurrent state: few rows, and they set how the state decays"
	reasonRWKVLora = "low-rank adapter of RWKV's token shift, decay or in-context rate, not a projection of the hidden width"
	reasonAltUp    = "AltUp stream prediction, correction or projection (Gemma 3n): coefficient matrices of a few rows, or the embedding's streams"
	reasonLaurel   = "LAuReL low-rank residual (Gemma 3n), not a block projection"
	reasonPerLayer = "per-layer embedding path (Gemma 3n and similar): embeddings projected into each block"
	reasonHyper    = "hyper-connection stream mixing: it mixes residual streams, not one stream's features"
	reasonIndexer  = "sparse attention's token selection or KV compression: its errors change which tokens attend"
	reasonNextN    = "multi-token-prediction layer, used only to draft tokens for speculative decoding"
	reasonVision   = "visual-expert projection (CogVLM), which text calibration never reaches"
	reasonConvPath = "projection of a convolutional mixing path"
	reasonDraft    = "draft-model part for speculative decoding"
	reasonAudio    = "audio decoder (WavTokenizer) layer outside the transformer blocks"
)

func target(group string, names ...string) []Role {
	out := make([]Role, len(names))
	for i, n := range names {
		out[i] = Role{Name: n, Group: group, Target: true}
	}
	return out
}

func excluded(reason string, names ...string) []Role {
	out := make([]Role, len(names))
	for i, n := range names {
		out[i] = Role{Name: n, Group: GroupOther, Reason: reason}
	}
	return out
}

func never(reason string, names ...string) []Role {
	out := excluded(reason, names...)
	for i := range out {
		out[i].Never = true
	}
	return out
}

// roles is the role table: every matrix-multiplication role of llama.cpp's
// tensor table (GGML_OP_MUL_MAT and GGML_OP_MUL_MAT_ID in LLM_TENSOR_INFOS,
// and the per-expert ffn_*.%d of early Mixtral files), target or not.
var roles = concat(
	target(GroupAttention,
		"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_kv", "attn_output", "attn_gate",
		"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_k_b", "attn_v_b",
		"attn_output_a", "attn_output_b",
		"enc.blk.%d.attn_q", "enc.blk.%d.attn_k", "enc.blk.%d.attn_v", "enc.blk.%d.attn_o",
		"dec.blk.%d.attn_q", "dec.blk.%d.attn_k", "dec.blk.%d.attn_v", "dec.blk.%d.attn_o",
		"dec.blk.%d.cross_attn_q", "dec.blk.%d.cross_attn_k", "dec.blk.%d.cross_attn_v", "dec.blk.%d.cross_attn_o"),
	target(GroupFeedForward,
		"ffn_gate", "ffn_up", "ffn_down",
		"ffn_gate.%d", "ffn_up.%d", "ffn_down.%d",
		"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_up_exps",
		"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
		"ffn_gate_chexps", "ffn_up_chexps", "ffn_down_chexps",
		"ffn_latent_down", "ffn_latent_up", "ffn_routed_down", "ffn_routed_up",
		"enc.blk.%d.ffn_gate", "enc.blk.%d.ffn_up", "enc.blk.%d.ffn_down",
		"dec.blk.%d.ffn_gate", "dec.blk.%d.ffn_up", "dec.blk.%d.ffn_down"),
	target(GroupStateSpace, "ssm_in", "ssm_out", "shortconv.in_proj", "shortconv.out_proj"),
	target(GroupRWKV,
		"time_mix_key", "time_mix_value", "time_mix_receptance", "time_mix_gate", "time_mix_output",
		"channel_mix_key", "channel_mix_value", "channel_mix_receptance"),

	never(reasonRouter, "ffn_gate_inp", "ffn_gate_inp_shexp"),
	never(reasonHead, "output", "cls", "cls.output", "dense_2", "dense_3",
		"nextn.shared_head_head", "output_hc_fn", "output_hc_down", "output_hc_up"),
	excluded(reasonScan, "ssm_x", "ssm_dt"),
	excluded(reasonStateGt, "ssm_ba", "ssm_alpha", "ssm_beta", "ssm_f_a", "ssm_f_b", "ssm_g", "ssm_g_a", "ssm_g_b"),
	excluded(reasonRWKVLora, "time_mix_w1", "time_mix_w2", "time_mix_decay_w1", "time_mix_decay_w2",
		"time_mix_a1", "time_mix_a2", "time_mix_v1", "time_mix_v2", "time_mix_g1", "time_mix_g2"),
	excluded(reasonAltUp, "altup_proj", "altup_unembd_proj", "altup_correct_coef", "altup_predict_coef", "altup_router"),
	excluded(reasonLaurel, "laurel_l", "laurel_r"),
	excluded(reasonPerLayer, "per_layer_model_proj", "inp_gate", "proj", "ple_key", "ple_value"),
	excluded(reasonHyper, "hc_attn_fn", "hc_attn_down", "hc_attn_up", "hc_attn_inject",
		"hc_ffn_fn", "hc_ffn_down", "hc_ffn_up", "hc_ffn_inject"),
	excluded(reasonIndexer, "indexer.proj", "indexer.attn_k", "indexer.attn_q_b", "indexer.k_proj", "indexer.q_proj",
		"indexer_compressor_kv", "indexer_compressor_gate", "attn_compressor_kv", "attn_compressor_gate"),
	excluded(reasonNextN, "nextn.eh_proj", "nextn.pre_projection", "nextn.post_projection"),
	excluded(reasonVision, "vis_attn_qkv", "vis_attn_output", "vis_gate", "vis_up", "vis_down"),
	excluded(reasonConvPath, "attn_conv_proj", "ffn_conv_proj"),
	excluded(reasonDraft, "conf_proj", "fc", "markov_w2", "selector_hidden"),
	excluded(reasonAudio, "convnext.%d.pw1", "convnext.%d.pw2",
		"posnet.%d.attn_q", "posnet.%d.attn_k", "posnet.%d.attn_v", "posnet.%d.attn_output"),
)

func concat(lists ...[]Role) []Role {
	var out []Role
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var roleIndex = func() map[string]Role {
	m := make(map[string]Role, len(roles))
	for _, r := range roles {
		m[r.Name] = r
	}
	return m
}()

// Roles returns the role table, targets first, in a fixed order.
func Roles() []Role {
	return append([]Role(nil), roles...)
}

// LookupRole returns the table's row of a role.
func LookupRole(role string) (Role, bool) {
	r, ok := roleIndex[role]
	return r, ok
}

// RoleOf returns the role of a tensor name and its parameter suffix
// ("weight", "bias", or "" when the name has none): "blk.3.ffn_gate.7.weight"
// is role "ffn_gate.%d", parameter "weight".
func RoleOf(name string) (role, param string) {
	parts := strings.Split(name, ".")
	if n := len(parts); n > 1 && (parts[n-1] == "weight" || parts[n-1] == "bias") {
		param = parts[n-1]
		parts = parts[:n-1]
	}
	for i, p := range parts {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			parts[i] = "%d"
		}
	}
	return strings.TrimPrefix(strings.Join(parts, "."), "blk.%d."), param
}

// Verdict is what the default selection does with one tensor, and why.
type Verdict struct {
	Role   string `json:"role"`
	Target bool   `json:"target"`
	// Never says that no --include can make the tensor a target.
	Never bool `json:"never,omitempty"`
	// Reason says why the tensor is not a target; empty for targets.
	Reason string `json:"reason,omitempty"`
}

// The reasons of tensors outside the role table.
const (
	ReasonBias       = "a bias"
	ReasonVector     = "fewer than two dimensions (a norm, scale, bias, lerp or decay vector)"
	ReasonNorm       = "a norm"
	ReasonEmbedding  = "an embedding table: rows are looked up, not multiplied"
	ReasonConv       = "a convolution kernel"
	ReasonLerp       = "a lerp, decay or state vector of a recurrent block"
	ReasonNotWeight  = "not a weight (no .weight suffix)"
	ReasonUnknown    = "not a projection role of llama.cpp's tensor table"
	ReasonOutsideBlk = "a projection role outside a numbered block"
)

// Classify says whether the default selection makes a tensor of this name and
// number of dimensions a target, and why not. It holds the rules of
// docs/TARGETS.md: biases and 1-D tensors first, then the role table, then
// the kinds that are never targets (norms, embeddings, convolutions, lerp
// and decay vectors) and, last, roles neither knows.
func Classify(name string, dims int) Verdict {
	role, param := RoleOf(name)
	v := Verdict{Role: role}
	if param == "bias" {
		v.Never, v.Reason = true, ReasonBias
		return v
	}
	if dims < 2 {
		v.Never, v.Reason = true, ReasonVector
		return v
	}
	if r, ok := roleIndex[role]; ok {
		v.Never, v.Reason = r.Never, r.Reason
		switch {
		case param != "weight" && r.Target:
			v.Reason = ReasonNotWeight
		case r.Target && !inBlock(name):
			v.Reason = ReasonOutsideBlk
		default:
			v.Target = r.Target
		}
		return v
	}
	lower := strings.ToLower(role)
	switch {
	case strings.Contains(lower, "norm"):
		v.Never, v.Reason = true, ReasonNorm
	case strings.Contains(lower, "embd") || strings.Contains(lower, "embed") || role == "token_types":
		v.Never, v.Reason = true, ReasonEmbedding
	case strings.Contains(lower, "conv"):
		v.Never, v.Reason = true, ReasonConv
	case strings.Contains(lower, "lerp") || strings.Contains(lower, "decay") || isStateVector(role):
		v.Never, v.Reason = true, ReasonLerp
	default:
		v.Reason = ReasonUnknown
	}
	return v
}

// inBlock reports whether a name starts with a numbered block: "blk.N.",
// "enc.blk.N." or "dec.blk.N.".
func inBlock(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "enc."), "dec.")
	_, ok := Layer(name)
	return ok
}

// isStateVector reports the per-channel parameters of recurrent blocks that
// are neither lerps nor decays by name: Mamba's A and D, RWKV's bonus
// (time_mix_first), its w0/a0/v0 offsets and RWKV-7's k_k, k_a, r_k.
func isStateVector(role string) bool {
	switch role {
	case "ssm_a", "ssm_d", "time_mix_first", "time_mix_w0", "time_mix_a0", "time_mix_v0",
		"time_mix_k_k", "time_mix_k_a", "time_mix_r_k":
		return true
	}
	return false
}
