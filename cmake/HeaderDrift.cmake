# ctest header_drift: fails when include/wtd.h differs from the committed one (the build has just
# regenerated it), or when it is not tracked by git at all. Skipped (WTD_SKIP:) only when the
# source tree is not a git checkout. Usage: cmake -DSOURCE_DIR=... -DGIT=... -P HeaderDrift.cmake
if(NOT EXISTS "${SOURCE_DIR}/.git")
  message("WTD_SKIP: ${SOURCE_DIR} is not a git checkout; header drift not checked")
  return()
endif()
if(NOT GIT)
  message(FATAL_ERROR "git not found, but ${SOURCE_DIR} is a git checkout: cannot check header drift")
endif()
execute_process(COMMAND "${GIT}" ls-files --error-unmatch -- include/wtd.h
                WORKING_DIRECTORY "${SOURCE_DIR}"
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "include/wtd.h is not tracked by git (${err}): commit the generated header")
endif()
execute_process(COMMAND "${GIT}" --no-pager diff --exit-code --stat -p -- include/wtd.h
                WORKING_DIRECTORY "${SOURCE_DIR}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "include/wtd.h differs from the committed header — the exported API changed; "
                      "review and commit the regenerated header:\n${out}${err}")
endif()
message("include/wtd.h matches the committed header")
