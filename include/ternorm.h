/* ternorm C API: the core (ternary model, norm-only adapters, tokenizers, evaluation,
 * generation) for applications that embed it without Node. A plain C ABI:
 *
 *  - Every call that can fail returns a ternorm_status; TERNORM_OK (0) is success. On failure
 *    nothing the call would have produced is left behind (out-handles are set to NULL) and
 *    ternorm_last_error() gives a one-line message naming the problem.
 *  - No C++ exception crosses this boundary; a null pointer, a bad size, a corrupt file or blob
 *    is a status and a message, never a crash.
 *  - Handles are opaque. Free them with their _free function (NULL is accepted).
 *  - A model handle serves one call at a time: calls on the same model from several threads
 *    must be serialised by the caller; different models are independent. An adapter belongs to
 *    the model it was loaded for.
 *  - Anything long (evaluation, generation) takes a thread count: 0 = every hardware thread,
 *    otherwise 1..TERNORM_MAX_THREADS. Results never depend on it.
 *  - Deterministic: the same model, adapter, input, options and seed give the same tokens and
 *    numbers, run to run and at any thread count.
 *
 * Versioning: TERNORM_API_VERSION is raised on every change of this header that breaks source or
 * binary compatibility (a changed signature, enum value or struct layout). An application built
 * against this header checks ternorm_api_version() == TERNORM_API_VERSION at start-up to catch a
 * libternorm.so of another version.
 *
 * Build: the shared library libternorm.so and the static libternorm_core.a come from
 * `npm run build:native` (out/native/); examples/ shows every call.
 */
#ifndef TERNORM_H
#define TERNORM_H

#include <stddef.h>
#include <stdint.h>

#define TERNORM_API_VERSION 1
#define TERNORM_MAX_THREADS 1024

#if defined(__GNUC__)
#define TERNORM_API __attribute__((visibility("default")))
#else
#define TERNORM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ternorm_status {
  TERNORM_OK = 0,
  /* A null pointer, a size, option or token id out of range, a text too short, a prompt longer
   * than the context, an adapter of another model. */
  TERNORM_E_INVALID_ARGUMENT = 1,
  /* The content of a file or buffer is wrong: not a ternorm/GGUF file, truncated, corrupt,
   * another kind or version, an adapter trained on another base model, a bad adapter blob. */
  TERNORM_E_FORMAT = 2,
  /* A file that cannot be opened or read (missing, not a regular file, no permission). */
  TERNORM_E_IO = 3,
  /* An output buffer too small; the call reports the size it needs and writes nothing. */
  TERNORM_E_BUFFER_TOO_SMALL = 4,
  TERNORM_E_OUT_OF_MEMORY = 5,
  /* A defect of ternorm itself (please report it with the message). */
  TERNORM_E_INTERNAL = 6
} ternorm_status;

/* The TERNORM_API_VERSION the library was built with. */
TERNORM_API int ternorm_api_version(void);

/* The message of the last failed call on this thread ("" when none failed). The pointer stays
 * valid until the next failing call on the same thread. */
TERNORM_API const char* ternorm_last_error(void);

/* "ok", "invalid argument", "format", "io", "buffer too small", "out of memory", "internal";
 * "unknown" for any other value. */
TERNORM_API const char* ternorm_status_name(ternorm_status status);

/* ---- models ------------------------------------------------------------------------------ */
typedef struct ternorm_model ternorm_model;

/* A ternorm model file (.tnm, or a checkpoint) or a GGUF (llama architecture), told apart by
 * their magic bytes, not by the name. A GGUF is memory-mapped; a .tnm is read into memory. The
 * model's tokenizer comes with it: the .tnm's byte BPE, or a GGUF's ternorm tokenizer when it
 * carries one, else its tokenizer.ggml.* vocabulary. */
TERNORM_API ternorm_status ternorm_model_load_file(const char* path, ternorm_model** out);

/* The same from a file image in memory (size bytes at data). The bytes are copied: the caller's
 * buffer may be freed when the call returns. */
TERNORM_API ternorm_status ternorm_model_load_memory(const void* data, size_t size,
                                                     ternorm_model** out);

TERNORM_API void ternorm_model_free(ternorm_model* model);

typedef struct ternorm_model_info {
  int64_t vocab, d_model, n_layers, n_heads, n_kv_heads, d_ff, context;
  int64_t n_norms; /* an adapter holds n_norms x d_model gains */
  int32_t bos_id;  /* the tokenizer's BOS / EOS token, -1 when it has none (the byte BPE of */
  int32_t eos_id;  /* a .tnm has none: its generation stops at max_tokens or the callback) */
  /* Memory, computed from the loaded structures: */
  int64_t source_bytes;       /* the file or buffer the model was loaded from */
  int64_t weight_bytes;       /* held in memory after loading: fp32 parameter buffer (embedding,
                                 norms, head, latent block weights), packed ternary weights with
                                 their scales, RoPE tables */
  int64_t kv_bytes_per_token; /* a generation's key/value cache, per token of context */
  int64_t adapter_f32_bytes;  /* an adapter's gains as f32 (n_norms x d_model x 4) */
} ternorm_model_info;

TERNORM_API ternorm_status ternorm_model_get_info(const ternorm_model* model,
                                                  ternorm_model_info* out);

/* ---- adapters (a per-user gain on every RMSNorm weight) ---------------------------------- */
typedef struct ternorm_adapter ternorm_adapter;

/* An adapter file or encoded adapter file (the kinds `ternorm train-adapter` and the codecs
 * write), checked against the model: its shape, and that it was trained on this very base
 * model (the base fingerprint). An encoded adapter stays encoded: the fused norm kernel decodes
 * its gains as it runs. */
TERNORM_API ternorm_status ternorm_adapter_load_file(const ternorm_model* model, const char* path,
                                                     ternorm_adapter** out);
/* The same from the file's bytes in memory (copied). */
TERNORM_API ternorm_status ternorm_adapter_load_memory(const ternorm_model* model, const void* data,
                                                       size_t size, ternorm_adapter** out);
/* A bare encoded adapter blob (n_norms records, native/codec/README.md): the smallest form to
 * send over a network. It carries no base fingerprint, so only its shape is checked against the
 * model: the application vouches that it was encoded for this base. */
TERNORM_API ternorm_status ternorm_adapter_from_blob(const ternorm_model* model, const void* data,
                                                     size_t size, ternorm_adapter** out);
/* n_gains = n_norms x d_model f32 gains in norm order (copied; each finite, within the core's
 * gain limits). */
TERNORM_API ternorm_status ternorm_adapter_from_gains(const ternorm_model* model,
                                                      const float* gains, size_t n_gains,
                                                      ternorm_adapter** out);

TERNORM_API void ternorm_adapter_free(ternorm_adapter* adapter);

/* The adapter's gains encoded by a codec method that needs no calibration text ("f32", "f16",
 * "int8_per_tensor", "int8_group", "int8_asym", "int8_delta", "int4_delta", "kmeans16",
 * "kmeans256"; native/codec/README.md) as a bare blob, what a server sends an edge app
 * (ternorm_adapter_from_blob reads it). An encoded adapter is re-encoded from its decoded gains.
 * Always sets *blob_size; writes only when capacity >= it, else TERNORM_E_BUFFER_TOO_SMALL. */
TERNORM_API ternorm_status ternorm_adapter_encode_blob(const ternorm_adapter* adapter,
                                                       const char* method, void* blob,
                                                       size_t capacity, size_t* blob_size);

typedef struct ternorm_adapter_info {
  /* "f32" or the codec method name ("int8_per_tensor", ...); owned by the adapter. */
  const char* scheme;
  int64_t n_gains;
  /* What the norm kernel reads for it: the encoded blob's bytes, or n_gains x 4 for f32. */
  int64_t encoded_bytes;
} ternorm_adapter_info;

TERNORM_API ternorm_status ternorm_adapter_get_info(const ternorm_adapter* adapter,
                                                    ternorm_adapter_info* out);

/* ---- tokenizer ---------------------------------------------------------------------------- */
/* Token ids of text[0, text_len) (any bytes). add_special != 0 adds BOS/EOS as a GGUF's
 * tokenizer metadata asks (the .tnm byte BPE has none). Special-token text in the input stays
 * text. Always sets *n_tokens to the count; writes the ids only when capacity >= that count,
 * else returns TERNORM_E_BUFFER_TOO_SMALL (tokens may be NULL when capacity is 0). */
TERNORM_API ternorm_status ternorm_tokenize(const ternorm_model* model, const char* text,
                                            size_t text_len, int add_special, int32_t* tokens,
                                            size_t capacity, size_t* n_tokens);

/* The bytes of n ids, then a terminating NUL. Always sets *text_len to the byte count (without
 * the NUL); writes only when capacity >= *text_len + 1, else TERNORM_E_BUFFER_TOO_SMALL. */
TERNORM_API ternorm_status ternorm_detokenize(const ternorm_model* model, const int32_t* tokens,
                                              size_t n, char* text, size_t capacity,
                                              size_t* text_len);

/* ---- evaluation: per-token negative log-likelihood, perplexity --------------------------- */
typedef struct ternorm_eval_options {
  int64_t stride; /* sliding-window step in tokens, 1..context; 0 = context / 2 */
  int64_t batch;  /* windows per forward pass (memory vs speed; results do not change); 0 = 4 */
  int32_t n_threads;
} ternorm_eval_options;

typedef struct ternorm_eval_result {
  int64_t n_tokens;  /* tokens of the text */
  int64_t n_scored;  /* n_tokens - 1: every token after the first is scored once */
  int64_t n_bytes;   /* UTF-8 bytes the scored tokens decode to */
  double total_nll;  /* nats */
  double mean_nll;   /* nats per token */
  double perplexity; /* exp(mean_nll) */
  double bits_per_byte;
  int64_t n_windows, window, stride;
} ternorm_eval_result;

/* The model's ternary inference over text (tokenized as ternorm_tokenize with add_special 0),
 * as `ternorm evaluate` computes it: sliding windows of the context, every token after the
 * first scored exactly once. adapter may be NULL (the base model); opts NULL = the defaults.
 * When nll is not NULL, the first min(nll_capacity, n_scored) per-token NLLs (nats; nll[i]
 * scores token i + 1) are written there. A text of fewer than 2 tokens is
 * TERNORM_E_INVALID_ARGUMENT. */
TERNORM_API ternorm_status ternorm_evaluate(const ternorm_model* model,
                                            const ternorm_adapter* adapter, const char* text,
                                            size_t text_len, const ternorm_eval_options* opts,
                                            ternorm_eval_result* out, double* nll,
                                            size_t nll_capacity);

/* ---- generation ---------------------------------------------------------------------------- */
typedef struct ternorm_generate_options {
  /* Sampling, applied to softmax(logits / temperature) in this order (native/model/sampler.h):
   * top_k (0 = off), top_p (1 = off), min_p (0 = off). temperature 0 is greedy. */
  float temperature;
  int64_t top_k;
  float top_p;
  float min_p;
  uint64_t seed;       /* the sampler's stream: same seed, same tokens, on every CPU path */
  int64_t max_tokens;  /* >= 1: tokens to generate at most */
  int32_t stop_at_eos; /* != 0: stop when the model samples its EOS token (not passed on) */
  int32_t add_special; /* != 0: the prompt gets BOS/EOS as ternorm_tokenize's add_special */
  int32_t n_threads;
} ternorm_generate_options;

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, seed 0, max_tokens 128, stop_at_eos 1,
 * add_special 1, n_threads 0. */
TERNORM_API void ternorm_generate_options_default(ternorm_generate_options* opts);

/* Called once per generated token with its id and the bytes it adds to the text (a token may
 * end inside a multi-byte UTF-8 character; the next pieces complete it). Returns 0 to go on,
 * anything else to stop. piece is valid during the call only. */
typedef int (*ternorm_token_callback)(int32_t token, const char* piece, size_t piece_len,
                                      void* user_data);

typedef enum ternorm_stop_reason {
  TERNORM_STOP_MAX_TOKENS = 0,
  TERNORM_STOP_EOS = 1,
  TERNORM_STOP_CALLBACK = 2,
  /* The sequence filled the model's context. Generation refuses to slide past it: positions
   * beyond it have no RoPE angle the model was trained on. */
  TERNORM_STOP_CONTEXT = 3
} ternorm_stop_reason;

typedef struct ternorm_generate_result {
  int64_t n_prompt_tokens;
  int64_t n_generated; /* tokens passed to the callback */
  ternorm_stop_reason stop_reason;
} ternorm_generate_result;

/* Continues prompt[0, prompt_len) with the model (ternary inference over a key/value cache,
 * the prompt processed in one batch) and the adapter (NULL = base). The prompt must encode to
 * 1..context tokens. callback may be NULL (the result still counts the tokens); opts NULL = the
 * defaults. */
TERNORM_API ternorm_status ternorm_generate(const ternorm_model* model,
                                            const ternorm_adapter* adapter, const char* prompt,
                                            size_t prompt_len, const ternorm_generate_options* opts,
                                            ternorm_token_callback callback, void* user_data,
                                            ternorm_generate_result* out);

#ifdef __cplusplus
}
#endif

#endif /* TERNORM_H */
