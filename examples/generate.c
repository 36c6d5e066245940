/* An edge application's use of the ternorm C API (include/ternorm.h), in C:
 * load a model from a path and from memory, receive a per-user adapter as a
 * small encoded blob and load it from memory, tokenize, evaluate, generate
 * with a per-token callback, and free everything. Every check that fails
 * prints what went wrong and exits 1, so CI runs this as a test.
 *
 *   ternorm_example_c MODEL [ADAPTER_FILE]
 *
 * Without ADAPTER_FILE the adapter is a stand-in for a trained one (gains
 * 1 + 0.02 sin(i)): built from f32 gains, encoded as an int8_per_tensor blob
 * (what a server would send), and loaded back from that blob. With
 * ADAPTER_FILE (an adapter or encoded adapter file trained for MODEL) the
 * file's bytes are loaded from memory as well. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ternorm.h"

static const char kText[] =
    "The state of the union is strong, and the work of the coming year will make it "
    "stronger still. We have met the challenges of the past with courage and resolve, "
    "and we will meet those ahead with the same determination.";
static const char kPrompt[] = "The people of this nation";

static int check(ternorm_status s, const char* what) {
  if (s == TERNORM_OK) return 1;
  fprintf(stderr, "FAIL %s: %s (%s)\n", what, ternorm_last_error(), ternorm_status_name(s));
  return 0;
}

static int expect(int cond, const char* what) {
  if (!cond) fprintf(stderr, "FAIL %s\n", what);
  return cond;
}

/* The whole file in a malloc'd buffer (NULL on failure). */
static unsigned char* read_all(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* buf = NULL;
  long n;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
    buf = (unsigned char*)malloc((size_t)n);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    }
    *size = (size_t)n;
  }
  fclose(f);
  return buf;
}

typedef struct {
  int32_t tokens[64];
  int n;
  int stop_after; /* 0 = never stop from here */
  int print;
} Collected;

static int on_token(int32_t token, const char* piece, size_t piece_len, void* user) {
  Collected* c = (Collected*)user;
  if (c->n < 64) c->tokens[c->n] = token;
  c->n++;
  if (c->print) fwrite(piece, 1, piece_len, stdout);
  return c->stop_after > 0 && c->n >= c->stop_after;
}

static int evaluate(const ternorm_model* m, const ternorm_adapter* a, const char* label,
                    double* ppl) {
  ternorm_eval_options eo = {0, 0, 2}; /* stride context/2, default batch, 2 threads */
  ternorm_eval_result r;
  double nll[256];
  if (!check(ternorm_evaluate(m, a, kText, strlen(kText), &eo, &r, nll, 256), label)) return 0;
  printf("evaluate %-26s %3lld tokens, mean NLL %.4f nats, perplexity %.3f, %.4f bits/byte\n",
         label, (long long)r.n_tokens, r.mean_nll, r.perplexity, r.bits_per_byte);
  *ppl = r.perplexity;
  return expect(r.n_scored == r.n_tokens - 1 && isfinite(r.mean_nll) && r.mean_nll > 0 &&
                    fabs(exp(r.mean_nll) - r.perplexity) < 1e-9 * r.perplexity && nll[0] > 0,
                "evaluation results consistent");
}

int main(int argc, char** argv) {
  ternorm_model *m = NULL, *mm = NULL, *missing = NULL;
  ternorm_adapter *af = NULL, *ab = NULL, *afile = NULL;
  ternorm_model_info info, minfo;
  ternorm_adapter_info ainfo;
  unsigned char *bytes = NULL, *blob = NULL, *abytes = NULL;
  float* gains = NULL;
  int32_t* tokens = NULL;
  char* text = NULL;
  size_t size = 0, n_tokens = 0, text_len = 0, blob_size = 0, i;
  double ppl_base, ppl_mem, ppl_f32, ppl_blob, ppl_file;
  ternorm_generate_options go;
  ternorm_generate_result gr;
  Collected c1, c2;
  int ok = 0;

  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s MODEL [ADAPTER_FILE]\n", argv[0]);
    return 2;
  }
  if (!expect(ternorm_api_version() == TERNORM_API_VERSION, "library built for this header"))
    return 1;

  /* A bad input is a status and a message. */
  if (!expect(ternorm_model_load_file("/nonexistent/model.tnm", &missing) == TERNORM_E_IO &&
                  missing == NULL && strlen(ternorm_last_error()) > 0,
              "a missing file is TERNORM_E_IO"))
    return 1;
  printf("missing file: %s\n", ternorm_last_error());

  /* The model from its path, and again from its bytes in memory. */
  if (!check(ternorm_model_load_file(argv[1], &m), "load model from path")) goto done;
  if (!check(ternorm_model_get_info(m, &info), "model info")) goto done;
  printf(
      "model: vocab %lld, d_model %lld, %lld layers, d_ff %lld, context %lld; %lld bytes "
      "loaded, %lld bytes in memory, KV cache %lld bytes/token\n",
      (long long)info.vocab, (long long)info.d_model, (long long)info.n_layers,
      (long long)info.d_ff, (long long)info.context, (long long)info.source_bytes,
      (long long)info.weight_bytes, (long long)info.kv_bytes_per_token);
  bytes = read_all(argv[1], &size);
  if (!expect(bytes != NULL, "read the model file")) goto done;
  if (!check(ternorm_model_load_memory(bytes, size, &mm), "load model from memory")) goto done;
  free(bytes);
  bytes = NULL; /* the model holds its own copy */
  if (!check(ternorm_model_get_info(mm, &minfo), "model info (memory)")) goto done;
  if (!expect(minfo.weight_bytes == info.weight_bytes && minfo.vocab == info.vocab,
              "the same model from path and memory"))
    goto done;

  /* Tokenize: ask the size, then fill. Detokenize gives the text back. */
  if (!expect(ternorm_tokenize(m, kText, strlen(kText), 0, NULL, 0, &n_tokens) ==
                  TERNORM_E_BUFFER_TOO_SMALL,
              "size query"))
    goto done;
  tokens = (int32_t*)malloc(n_tokens * sizeof(int32_t));
  if (!check(ternorm_tokenize(m, kText, strlen(kText), 0, tokens, n_tokens, &n_tokens), "tokenize"))
    goto done;
  text = (char*)malloc(strlen(kText) + 1);
  if (!check(ternorm_detokenize(m, tokens, n_tokens, text, strlen(kText) + 1, &text_len),
             "detokenize"))
    goto done;
  printf("tokenize: %zu bytes -> %zu tokens (first %d %d %d)\n", strlen(kText), n_tokens, tokens[0],
         tokens[1], tokens[2]);
  if (!expect(text_len == strlen(kText) && strcmp(text, kText) == 0, "round trip")) goto done;

  /* Evaluate: the base model, loaded either way, gives the same numbers. */
  if (!evaluate(m, NULL, "base (path)", &ppl_base)) goto done;
  if (!evaluate(mm, NULL, "base (memory)", &ppl_mem)) goto done;
  if (!expect(ppl_base == ppl_mem, "path and memory models evaluate alike")) goto done;

  /* The adapter: f32 gains -> an int8 blob "from the network" -> loaded from memory. */
  gains = (float*)malloc((size_t)(info.n_norms * info.d_model) * sizeof(float));
  for (i = 0; i < (size_t)(info.n_norms * info.d_model); ++i)
    gains[i] = 1.0f + 0.02f * (float)sin((double)i);
  if (!check(ternorm_adapter_from_gains(m, gains, (size_t)(info.n_norms * info.d_model), &af),
             "adapter from gains"))
    goto done;
  if (!expect(ternorm_adapter_encode_blob(af, "int8_per_tensor", NULL, 0, &blob_size) ==
                  TERNORM_E_BUFFER_TOO_SMALL,
              "blob size query"))
    goto done;
  blob = (unsigned char*)malloc(blob_size);
  if (!check(ternorm_adapter_encode_blob(af, "int8_per_tensor", blob, blob_size, &blob_size),
             "encode blob"))
    goto done;
  if (!check(ternorm_adapter_from_blob(mm, blob, blob_size, &ab), "adapter from blob")) goto done;
  if (!check(ternorm_adapter_get_info(ab, &ainfo), "adapter info")) goto done;
  printf("adapter: %lld gains, %lld bytes as f32, %zu bytes as the %s blob\n",
         (long long)ainfo.n_gains, (long long)info.adapter_f32_bytes, blob_size, ainfo.scheme);
  if (!evaluate(m, af, "adapter f32", &ppl_f32)) goto done;
  if (!evaluate(mm, ab, "adapter int8 blob", &ppl_blob)) goto done;
  if (!expect(fabs(ppl_blob - ppl_f32) < 0.01 * ppl_f32, "int8 blob close to f32")) goto done;
  if (!expect(ternorm_evaluate(m, ab, kText, strlen(kText), NULL, NULL, NULL, 0) ==
                  TERNORM_E_INVALID_ARGUMENT,
              "NULL result refused"))
    goto done;
  if (argc == 3) {
    abytes = read_all(argv[2], &size);
    if (!expect(abytes != NULL, "read the adapter file")) goto done;
    if (!check(ternorm_adapter_load_memory(mm, abytes, size, &afile), "adapter file from memory"))
      goto done;
    if (!evaluate(mm, afile, "adapter file", &ppl_file)) goto done;
  }

  /* Generate: greedy, printed as it streams. */
  ternorm_generate_options_default(&go);
  go.temperature = 0.0f;
  go.max_tokens = 24;
  go.n_threads = 2;
  memset(&c1, 0, sizeof c1);
  c1.print = 1;
  printf("greedy: %s", kPrompt);
  if (!check(ternorm_generate(mm, ab, kPrompt, strlen(kPrompt), &go, on_token, &c1, &gr),
             "generate greedy"))
    goto done;
  printf("\n");
  if (!expect(gr.n_generated == 24 && c1.n == 24 && gr.stop_reason == TERNORM_STOP_MAX_TOKENS,
              "24 greedy tokens"))
    goto done;

  /* Sampling is seeded: the same seed gives the same tokens, at any thread count. */
  ternorm_generate_options_default(&go);
  go.seed = 42;
  go.max_tokens = 16;
  go.n_threads = 1;
  memset(&c1, 0, sizeof c1);
  memset(&c2, 0, sizeof c2);
  if (!check(ternorm_generate(m, NULL, kPrompt, strlen(kPrompt), &go, on_token, &c1, &gr),
             "generate sampled (1 thread)"))
    goto done;
  go.n_threads = 2;
  if (!check(ternorm_generate(mm, NULL, kPrompt, strlen(kPrompt), &go, on_token, &c2, &gr),
             "generate sampled (2 threads)"))
    goto done;
  if (!expect(c1.n == c2.n && memcmp(c1.tokens, c2.tokens, (size_t)c1.n * sizeof(int32_t)) == 0,
              "seeded sampling deterministic"))
    goto done;
  printf("sampled (seed 42): %d tokens, the same at 1 and 2 threads\n", c1.n);

  /* The callback stops generation. */
  memset(&c1, 0, sizeof c1);
  c1.stop_after = 5;
  if (!check(ternorm_generate(m, NULL, kPrompt, strlen(kPrompt), &go, on_token, &c1, &gr),
             "generate with stop"))
    goto done;
  if (!expect(gr.n_generated == 5 && gr.stop_reason == TERNORM_STOP_CALLBACK,
              "the callback stopped generation after 5 tokens"))
    goto done;
  printf("callback stop: after %lld tokens\n", (long long)gr.n_generated);
  ok = 1;

done:
  ternorm_adapter_free(afile);
  ternorm_adapter_free(ab);
  ternorm_adapter_free(af);
  ternorm_model_free(mm);
  ternorm_model_free(m);
  free(abytes);
  free(blob);
  free(gains);
  free(text);
  free(tokens);
  free(bytes);
  printf("%s\n", ok ? "example: all checks passed" : "example: FAILED");
  return ok ? 0 : 1;
}
