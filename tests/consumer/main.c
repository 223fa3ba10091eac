/* Consumer of an installed wtd: prints the library version. */
#include <wtd.h>

#include <stdio.h>

int main(void) {
    printf("wtd_version=%s\n", wtd_version());
    wtd_shutdown();
    return wtd_version_number() ==
                   (uint32_t)((WTD_VERSION_MAJOR << 16) | (WTD_VERSION_MINOR << 8) |
                              WTD_VERSION_PATCH)
               ? 0
               : 1;
}
