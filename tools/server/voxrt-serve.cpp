// voxrt-serve: the server alone (`voxrt serve` runs the same code).
#include "server.h"

int main(int argc, char** argv) {
    return voxrt::server::serve_main(argc, argv);
}
