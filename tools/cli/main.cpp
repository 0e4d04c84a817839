// voxrt command line (being built: subcommands land with the engine).
#include <cstdio>

int main(int argc, char** argv) {
    std::fprintf(stderr, "usage: voxrt {s2s|asr|tts|chat|inspect|bench} ...\n");
    return 2;
}
