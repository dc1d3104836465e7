// harness: times llama.cpp on a GPT-2 GGUF with the definitions of `modelrt bench`, and prints
// one JSON object on stdout.
//
//   harness LIBDIR MODEL.gguf THREADS PROMPT NEW BATCHES GREEDY_NEW
//
// For each batch size B in BATCHES (comma-separated, ascending): B independent sequences (seq ids
// 0..B-1) get the prompts of runtime/bench's promptIDs(B, PROMPT, vocab); one llama_decode of all
// B·PROMPT tokens is the prefill (its wall time at the first B is prefill_ms); then NEW-1 decode
// steps of B tokens each, the next token of every row chosen greedily (argmax) on the host after
// each step, exactly as modelrt's Generate counts them: decode tokens/s = B·(NEW-1) / wall time
// from the first decode step to the last. A warm-up run (4-token prompt, 2 tokens) comes first,
// as in modelrt bench. Finally, the greedy ids of row 0 of promptIDs(1, PROMPT) for GREEDY_NEW
// new tokens, for comparison with the native backend.
//
//   harness LIBDIR MODEL.gguf --tokenize TEXT
//
// prints llama.cpp's token ids of TEXT (no BOS), to check an exported vocabulary.
//
// It is built against llama.h of the llama.cpp source the prebuilt libraries were built from
// (scripts/bench/llamacpp.sh) and linked to those libraries; the CPU backend variant for this
// machine is loaded from the library directory by ggml_backend_load_all_from_path.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "llama.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void quiet_log(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (level >= GGML_LOG_LEVEL_WARN && level != GGML_LOG_LEVEL_CONT) fputs(text, stderr);
}

// prompt_id is runtime/bench's promptIDs: (1 + 7919·(r·n+i)) mod (vocab-1).
static llama_token prompt_id(int r, int n, int i, int vocab) {
    return (llama_token)((1 + 7919LL * (r * n + i)) % (vocab - 1));
}

static llama_token argmax(const float *l, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;  // first maximum, as modelrt's greedy sampler
    return best;
}

static void batch_add(struct llama_batch *b, llama_token id, llama_pos pos, llama_seq_id seq, int logits) {
    int i = b->n_tokens++;
    b->token[i] = id;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = (int8_t)logits;
}

// run decodes B rows of prompt tokens then new-1 steps; it returns prefill and decode wall times
// and, when ids is not NULL, writes row 0's new tokens there.
static int run(struct llama_context *ctx, int vocab, int B, int prompt, int new_tokens,
               double *prefill_s, double *decode_s, llama_token *ids) {
    llama_memory_clear(llama_get_memory(ctx), true);
    struct llama_batch batch = llama_batch_init(B * prompt, 0, B);
    llama_token *next = calloc(B, sizeof *next);
    for (int r = 0; r < B; r++)
        for (int i = 0; i < prompt; i++) batch_add(&batch, prompt_id(r, prompt, i, vocab), i, r, i == prompt - 1);
    double t0 = now_s();
    if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "harness: prefill of %dx%d failed\n", B, prompt); return 1; }
    for (int r = 0; r < B; r++) next[r] = argmax(llama_get_logits_ith(ctx, (r + 1) * prompt - 1), vocab);
    double t1 = now_s();
    *prefill_s = t1 - t0;
    if (ids) ids[0] = next[0];
    for (int s = 1; s < new_tokens; s++) {
        batch.n_tokens = 0;
        for (int r = 0; r < B; r++) batch_add(&batch, next[r], prompt + s - 1, r, 1);
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "harness: decode step %d at batch %d failed\n", s, B); return 1; }
        for (int r = 0; r < B; r++) next[r] = argmax(llama_get_logits_ith(ctx, r), vocab);
        if (ids) ids[s] = next[0];
    }
    *decode_s = now_s() - t1;
    llama_batch_free(batch);
    free(next);
    return 0;
}

static int tokenize(const char *libdir, const char *path, const char *text) {
    llama_log_set(quiet_log, NULL);
    ggml_backend_load_all_from_path(libdir);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "harness: cannot load %s\n", path); return 1; }
    int n = (int)strlen(text) + 8;
    llama_token *ids = calloc(n, sizeof *ids);
    n = llama_tokenize(llama_model_get_vocab(model), text, (int32_t)strlen(text), ids, n, false, true);
    if (n < 0) { fprintf(stderr, "harness: tokenize failed\n"); return 1; }
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("\n");
    free(ids);
    llama_model_free(model);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[3], "--tokenize") == 0) return tokenize(argv[1], argv[2], argv[4]);
    if (argc != 8) {
        fprintf(stderr, "usage: %s LIBDIR MODEL.gguf THREADS PROMPT NEW BATCHES GREEDY_NEW\n", argv[0]);
        return 2;
    }
    const char *libdir = argv[1], *path = argv[2];
    int threads = atoi(argv[3]), prompt = atoi(argv[4]), new_tokens = atoi(argv[5]), greedy_new = atoi(argv[7]);
    int batches[16], nb = 0;
    for (char *tok = strtok(argv[6], ","); tok && nb < 16; tok = strtok(NULL, ",")) batches[nb++] = atoi(tok);
    if (threads <= 0 || prompt <= 0 || new_tokens <= 1 || nb == 0 || greedy_new <= 0) {
        fprintf(stderr, "harness: bad arguments\n");
        return 2;
    }
    int maxB = batches[nb - 1];

    llama_log_set(quiet_log, NULL);
    ggml_backend_load_all_from_path(libdir);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    double tl = now_s();
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "harness: cannot load %s\n", path); return 1; }
    double load_s = now_s() - tl;
    int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    struct llama_context_params cp = llama_context_default_params();
    int per_seq = prompt + new_tokens;
    if (per_seq < prompt + greedy_new) per_seq = prompt + greedy_new;
    cp.n_seq_max = maxB;
    cp.n_ctx = (uint32_t)(maxB * ((per_seq + 255) / 256 * 256));
    cp.n_batch = cp.n_ubatch = (uint32_t)(maxB * prompt);
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "harness: cannot create a context\n"); return 1; }

    double p, d;
    if (run(ctx, vocab, 1, prompt < 4 ? prompt : 4, 2, &p, &d, NULL)) return 1;  // warm-up

    printf("{\"model\":\"%s\",\"threads\":%d,\"vocab\":%d,\"load_ms\":%.1f,\"prompt_tokens\":%d,\"new_tokens\":%d,"
           "\"flash_attn\":\"%s\",\"system_info\":\"%s\",\"decode\":[",
           path, threads, vocab, load_s * 1e3, prompt, new_tokens, llama_flash_attn_type_name(cp.flash_attn_type),
           llama_print_system_info());
    double prefill_ms = 0;
    for (int k = 0; k < nb; k++) {
        int B = batches[k];
        if (run(ctx, vocab, B, prompt, new_tokens, &p, &d, NULL)) return 1;
        if (k == 0) prefill_ms = p * 1e3;
        printf("%s{\"batch\":%d,\"prefill_ms\":%.2f,\"tokens_per_s\":%.3f}", k ? "," : "", B, p * 1e3,
               B * (new_tokens - 1) / d);
        fflush(stdout);
    }
    llama_token *ids = calloc(greedy_new, sizeof *ids);
    if (run(ctx, vocab, 1, prompt, greedy_new, &p, &d, ids)) return 1;
    printf("],\"prefill_ms\":%.2f,\"greedy_prompt\":[", prefill_ms);
    for (int i = 0; i < prompt; i++) printf("%s%d", i ? "," : "", prompt_id(0, prompt, i, vocab));
    printf("],\"greedy_ids\":[");
    for (int i = 0; i < greedy_new; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("]}\n");
    free(ids);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
