// Lists the core's C++ sources of one kind for binding.gyp, so that the
// node-gyp build and CMakeLists.txt (which globs the same folders) agree.
//   node scripts/native-sources.cjs generic|avx2|avx512|neon|addon
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..', 'native');
const coreDirs = ['cpu', 'ternary', 'gemm', 'norm', 'codec', 'io', 'model', 'tokenizer', 'capi'];
const kind = process.argv[2];
const isaOf = (f) => (f.match(/_(avx2|avx512|neon)\.cpp$/) || [null, 'generic'])[1];

let files;
if (kind === 'addon') {
  files = fs
    .readdirSync(path.join(root, 'addon'))
    .filter((f) => f.endsWith('.cpp'))
    .map((f) => `addon/${f}`);
} else if (['generic', 'avx2', 'avx512', 'neon'].includes(kind)) {
  files = coreDirs
    .filter((d) => fs.existsSync(path.join(root, d)))
    .flatMap((d) =>
      fs
        .readdirSync(path.join(root, d))
        .filter((f) => f.endsWith('.cpp') && isaOf(f) === kind)
        .map((f) => `${d}/${f}`),
    );
} else {
  console.error('usage: native-sources.cjs generic|avx2|avx512|neon|addon');
  process.exit(2);
}
// gyp paths are relative to binding.gyp.
console.log(
  files
    .sort()
    .map((f) => `native/${f}`)
    .join(' '),
);
