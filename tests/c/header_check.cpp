// Compiles wtd.h as C++17 (-Wall -Wextra -Werror): the extern "C" guards, the typedef'd enums and
// opaque structs must all be usable from C++ without casts or warnings.
#include "wtd.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

static_assert(WTD_OK == 0, "WTD_OK must be 0");
static_assert(std::is_enum<wtd_result>::value, "wtd_result is an enum");
static_assert(std::is_enum<wtd_log_level>::value, "wtd_log_level is an enum");
// API 0.2: every enum crosses the boundary as a 4-byte integer.
static_assert(std::is_same<std::underlying_type<wtd_result>::type, uint32_t>::value, "u32");
static_assert(sizeof(wtd_draft) == 4 && sizeof(wtd_alert_kind) == 4, "4-byte enums");
static_assert(std::is_same<decltype(&wtd_version), const char *(*)()>::value, "wtd_version");

namespace {
extern "C" void on_log(void *user_data, wtd_log_level level, const char *message) {
    (void)level;
    (void)message;
    (void)user_data;
}
}  // namespace

int main() {
    const std::string expected = std::to_string(WTD_VERSION_MAJOR) + "." +
                                 std::to_string(WTD_VERSION_MINOR) + "." +
                                 std::to_string(WTD_VERSION_PATCH);
    if (expected != wtd_version()) {
        std::fprintf(stderr, "header says %s, library says %s\n", expected.c_str(), wtd_version());
        return 1;
    }
    const wtd_result r = wtd_set_runtime_threads(0);
    if (r != WTD_ERR_INVALID_ARGUMENT) return 1;
    if (std::strlen(wtd_last_error_message()) == 0) return 1;
    wtd_log_callbacks lc{};
    lc.struct_size = sizeof lc;
    lc.max_level = WTD_LOG_INFO;
    lc.on_log = on_log;
    if (wtd_log_set_callbacks(&lc) != WTD_OK) return 1;
    if (wtd_log_set_callbacks(nullptr) != WTD_OK) return 1;
    std::printf("wtd %s (C++17 header check): %s -> %s\n", wtd_version(), "set_runtime_threads(0)",
                wtd_result_str(r));
    wtd_shutdown();
    return 0;
}
