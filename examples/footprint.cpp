// The README's memory-footprint table, computed from the real structures: the
// shipped model loaded through the C API (ternorm_model_get_info), and the
// 107 M-parameter config (d_model 1024, 8 layers, 16 heads, d_ff 2816, the
// rest as shipped) built in memory with the core, both measured by the same
// capi::footprint. File and adapter sizes are the exact sizes the core's
// writers and the codec produce. Each model also as a GGUF (tq2_0 block
// matrices) with its token table in f32 and in f16, loaded back by the GGUF
// importer, which keeps an F16 table as stored.
//
//   ternorm_footprint models/base.tnm
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "../include/ternorm.h"
#include "capi/footprint.h"
#include "codec/codec.h"
#include "io/container.h"
#include "io/gguf.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "model/model_file.h"

using namespace ternorm;

namespace {

struct Row {
  std::string name;
  int64_t params = 0, file_bytes = 0, weight_bytes = 0, latent_block_bytes = 0;
  int64_t kv_per_token = 0, context = 0;
  int64_t adapter_f32 = 0, adapter_file = 0, int8_blob = 0, int8_file = 0;
};

std::string mib(int64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f MiB", double(b) / (1024.0 * 1024.0));
  return s;
}

// What the model holds of latent fp32 block weights, which ternary inference
// never reads (it computes with the packed trits).
int64_t latent_block_bytes(const model::Model& m) {
  int64_t n = 0;
  for (int i = 0; i < model::kLinearsPerLayer; ++i) {
    const model::LinearShape s = m.linear_shape(model::Linear(i));
    n += s.rows * s.cols;
  }
  return n * m.config().n_layers * int64_t(sizeof(float));
}

// Sizes of an adapter for m: f32 gains, the f32 adapter file, the
// int8_per_tensor blob and its encoded adapter file.
void adapter_sizes(const model::Model& m, Row& r) {
  const model::ModelConfig& c = m.config();
  std::vector<float> gains(size_t(c.n_gains()));
  for (size_t i = 0; i < gains.size(); ++i) gains[i] = 1.0f + 0.02f * float(std::sin(double(i)));
  const io::Fingerprint base{};
  r.adapter_file =
      int64_t(model::adapter_writer(c, gains.data(), int64_t(gains.size()), base, "").file_bytes());
  const codec::EncodedAdapter ea =
      codec::encode_adapter(codec::Method::Int8PerTensor, gains.data(), c.n_norms(), c.d_model);
  r.int8_blob = int64_t(codec::adapter_bytes(ea.tensors));
  r.int8_file =
      int64_t(model::encoded_adapter_writer(c, codec::Method::Int8PerTensor, ea.tensors, base, "")
                  .file_bytes());
}

// m exported as a tq2_0 GGUF with the token table in `table`, and loaded back.
Row gguf_row(const model::Model& m, const std::vector<uint8_t>& tokenizer, gemm::ElemType table,
             const std::string& name) {
  model::GgufExportOptions o;
  o.type = model::GgufWeightType::TQ2_0;
  o.table_type = table;
  o.ternorm_tokenizer = tokenizer;
  const std::vector<uint8_t> bytes = model::gguf_model_writer(m, o).finish();
  const model::GgufImported im = model::gguf_import(gguf::File::copy(bytes.data(), bytes.size()));
  if (im.model->table_type() != table)
    throw std::logic_error("the GGUF import changed the table type");
  const capi::Footprint f = capi::footprint(*im.model);
  Row r;
  r.name = name + " as GGUF tq2_0, " + gemm::elem_type_name(table) + " token table";
  r.params = im.model->n_params();
  r.file_bytes = int64_t(bytes.size());
  r.weight_bytes = f.weight_bytes;
  r.latent_block_bytes = latent_block_bytes(*im.model);
  r.kv_per_token = f.kv_bytes_per_token;
  r.context = im.model->config().context;
  r.adapter_f32 = f.adapter_f32_bytes;
  adapter_sizes(*im.model, r);
  return r;
}

void print(const std::vector<Row>& rows) {
  std::printf(
      "| model | parameters | model file | in memory after load | of which latent fp32 block "
      "weights | KV cache per token | KV cache, full context | adapter gains f32 | adapter "
      "file f32 | int8_per_tensor blob | int8_per_tensor file |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Row& r : rows)
    std::printf(
        "| %s | %lld | %lld B (%s) | %lld B (%s) | %s | %lld B | %s (%lld tokens) | %lld B | %lld "
        "B | %lld B | %lld B |\n",
        r.name.c_str(), (long long)r.params, (long long)r.file_bytes, mib(r.file_bytes).c_str(),
        (long long)r.weight_bytes, mib(r.weight_bytes).c_str(), mib(r.latent_block_bytes).c_str(),
        (long long)r.kv_per_token, mib(r.kv_per_token * r.context).c_str(), (long long)r.context,
        (long long)r.adapter_f32, (long long)r.adapter_file, (long long)r.int8_blob,
        (long long)r.int8_file);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL.tnm\n", argv[0]);
    return 2;
  }
  try {
    std::vector<Row> rows;
    // The shipped model, through the C API.
    ternorm_model* cm = nullptr;
    if (ternorm_model_load_file(argv[1], &cm) != TERNORM_OK) {
      std::fprintf(stderr, "%s\n", ternorm_last_error());
      return 1;
    }
    ternorm_model_info info{};
    ternorm_model_get_info(cm, &info);
    ternorm_model_free(cm);
    // The same file through the core, for what the C API does not report.
    const model::LoadedModel lm = model::load_model(io::read_file(argv[1]));
    const capi::Footprint f = capi::footprint(*lm.model);
    if (f.weight_bytes != info.weight_bytes || f.kv_bytes_per_token != info.kv_bytes_per_token)
      throw std::logic_error("the C API and the core disagree on the footprint");
    Row s;
    s.name = "shipped (" + std::string(argv[1]) + ")";
    s.params = lm.model->n_params();
    s.file_bytes = info.source_bytes;
    s.weight_bytes = info.weight_bytes;
    s.latent_block_bytes = latent_block_bytes(*lm.model);
    s.kv_per_token = info.kv_bytes_per_token;
    s.context = info.context;
    s.adapter_f32 = info.adapter_f32_bytes;
    adapter_sizes(*lm.model, s);
    rows.push_back(s);
    for (gemm::ElemType t : {gemm::ElemType::F32, gemm::ElemType::F16})
      rows.push_back(gguf_row(*lm.model, lm.tokenizer, t, "shipped"));

    // The 107 M config: the shipped shape with d_model 1024, 8 layers, 16
    // heads (head_dim 64 as shipped), d_ff 2816; its file as the writer would
    // produce it with the shipped tokenizer.
    model::ModelConfig c = lm.model->config();
    c.d_model = 1024, c.n_layers = 8, c.n_heads = 16, c.n_kv_heads = 0, c.d_ff = 2816;
    const model::Model big(c, 1);
    const capi::Footprint fb = capi::footprint(big);
    Row b;
    b.name = "107 M config";
    b.params = big.n_params();
    b.file_bytes = int64_t(model::model_writer(big, lm.tokenizer, "", nullptr).file_bytes());
    b.weight_bytes = fb.weight_bytes;
    b.latent_block_bytes = latent_block_bytes(big);
    b.kv_per_token = fb.kv_bytes_per_token;
    b.context = c.context;
    b.adapter_f32 = fb.adapter_f32_bytes;
    adapter_sizes(big, b);
    rows.push_back(b);
    for (gemm::ElemType t : {gemm::ElemType::F32, gemm::ElemType::F16})
      rows.push_back(gguf_row(big, lm.tokenizer, t, "107 M config"));
    print(rows);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "footprint: %s\n", e.what());
    return 1;
  }
  return 0;
}
