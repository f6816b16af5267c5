# Installs mailkeepd.service and the sample configuration.  The top-level
# CMakeLists.txt runs this at install time (install(SCRIPT)), after setting
# MK_SOURCE_DIR, MK_BINARY_DIR, MK_SBINDIR, MK_SYSCONFDIR,
# MK_SYSTEMD_UNITDIR and the directories mailkeepd was built with
# (MK_BUILT_PREFIX, MK_BUILT_SYSCONFDIR, MK_BUILT_LOCALSTATEDIR,
# MK_BUILT_RUNSTATEDIR).
#
# Here CMAKE_INSTALL_PREFIX is the prefix given to "cmake --install
# --prefix", so the paths in the unit are where the files really go.  They
# follow GNUInstallDirs: with prefix /usr the configuration lives in /etc.

# The absolute form of an install directory (relative to the prefix or
# absolute); system is TRUE for etc and var, which leave /usr and /opt.
function(mk_install_dir var dir system)
	string(REGEX REPLACE "(.)/+$" "\\1" prefix "${CMAKE_INSTALL_PREFIX}")
	if(IS_ABSOLUTE "${dir}")
		set(full "${dir}")
	elseif(system AND (prefix STREQUAL "/" OR prefix STREQUAL "/usr"))
		set(full "/${dir}")
	elseif(system AND prefix MATCHES "^/opt/(.*)")
		set(full "/${dir}/opt/${CMAKE_MATCH_1}")
	elseif(prefix STREQUAL "/")
		set(full "/usr/${dir}")
	else()
		set(full "${prefix}/${dir}")
	endif()
	set(${var} "${full}" PARENT_SCOPE)
endfunction()

mk_install_dir(sbindir "${MK_SBINDIR}" FALSE)
mk_install_dir(sysconfdir "${MK_SYSCONFDIR}" TRUE)
mk_install_dir(unitdir "${MK_SYSTEMD_UNITDIR}" FALSE)

configure_file("${MK_SOURCE_DIR}/systemd/mailkeepd.service"
    "${MK_BINARY_DIR}/systemd/mailkeepd.service" @ONLY)
file(INSTALL DESTINATION "${unitdir}" TYPE FILE
    FILES "${MK_BINARY_DIR}/systemd/mailkeepd.service")
# Only the sample: an existing mailkeep.conf is never touched.
file(INSTALL DESTINATION "${sysconfdir}/mailkeep" TYPE FILE
    FILES "${MK_SOURCE_DIR}/etc/mailkeep.conf.sample")

# The unit provides /var/lib/mailkeep and /run/mailkeep; say so when the
# daemon was built to look elsewhere by default.  GNUInstallDirs gives
# prefix /usr the run directory /var/run, a symbolic link to /run wherever
# systemd runs.
if(NOT MK_BUILT_LOCALSTATEDIR STREQUAL "/var" OR
    NOT MK_BUILT_RUNSTATEDIR MATCHES "^(/var)?/run$" OR
    NOT MK_BUILT_SYSCONFDIR STREQUAL sysconfdir)
	message(WARNING
	    "mailkeepd was built (CMAKE_INSTALL_PREFIX ${MK_BUILT_PREFIX}) to "
	    "keep its state in ${MK_BUILT_LOCALSTATEDIR}/lib/mailkeep, its "
	    "sockets in ${MK_BUILT_RUNSTATEDIR}/mailkeep and to read "
	    "${MK_BUILT_SYSCONFDIR}/mailkeep/mailkeep.conf by default, but "
	    "mailkeepd.service provides /var/lib/mailkeep and /run/mailkeep "
	    "and passes -c ${sysconfdir}/mailkeep/mailkeep.conf.  Configure "
	    "with -DCMAKE_INSTALL_PREFIX=/usr, or set state_dir, "
	    "status_socket and control_socket in mailkeep.conf.")
endif()
