{
  # The node-gyp build of the same sources CMakeLists.txt builds; the file
  # lists come from scripts/native-sources.cjs so the two builds cannot drift.
  # ternorm_core_lib names a core already built by the plain CMake build
  # (npm test builds the core once: scripts/build-addons.cjs); empty (an
  # install from source) compiles the core here.
  "variables": { "ternorm_core_lib%": "" },
  "target_defaults": {
    "cflags_cc": ["-std=c++17", "-O3", "-Wall", "-Wextra", "-ffp-contract=off", "-fexceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "include_dirs": ["native"]
  },
  "targets": [
    {
      "target_name": "ternorm",
      "sources": ["<!@(node scripts/native-sources.cjs addon)"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "conditions": [
        ["ternorm_core_lib!=''", { "libraries": ["<(ternorm_core_lib)"] }],
        ["ternorm_core_lib=='' and target_arch=='x64'", { "dependencies": ["ternorm_generic", "ternorm_avx2", "ternorm_avx512"] }],
        ["ternorm_core_lib=='' and target_arch=='arm64'", { "dependencies": ["ternorm_generic", "ternorm_neon"] }],
        ["ternorm_core_lib=='' and target_arch!='x64' and target_arch!='arm64'", { "dependencies": ["ternorm_generic"] }]
      ]
    }
  ],
  "conditions": [
    ["ternorm_core_lib==''", {
      "targets": [
        {
          "target_name": "ternorm_generic",
          "type": "static_library",
          "sources": ["<!@(node scripts/native-sources.cjs generic)"]
        }
      ]
    }],
    ["ternorm_core_lib=='' and target_arch=='x64'", {
      "targets": [
        {
          "target_name": "ternorm_avx2",
          "type": "static_library",
          "sources": ["<!@(node scripts/native-sources.cjs avx2)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
        },
        {
          "target_name": "ternorm_avx512",
          "type": "static_library",
          "sources": ["<!@(node scripts/native-sources.cjs avx512)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]
        }
      ]
    }],
    ["ternorm_core_lib=='' and target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "ternorm_neon",
          "type": "static_library",
          "sources": ["<!@(node scripts/native-sources.cjs neon)"]
        }
      ]
    }]
  ]
}
