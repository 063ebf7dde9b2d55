# The kernels' instruction-set files (src/kernels/*_<isa>*.cpp) are compiled for their instruction set
# file by file, and dispatch.cpp picks a level at run time from what the CPU reports. x86-64 builds the
# *_avx2* and *_avx512* files; AArch64 builds the *_neon* files (Advanced SIMD is part of every AArch64
# CPU; *_neon_dotprod* files add the SDOT extension and run only where HWCAP_ASIMDDP says so). Files of
# another architecture leave the target, which then holds the scalar level alone on other processors.
function(llama31_kernel_isa_sources target kernels_dir)
  file(GLOB avx512 CONFIGURE_DEPENDS ${kernels_dir}/*_avx512*.cpp)
  file(GLOB avx2 CONFIGURE_DEPENDS ${kernels_dir}/*_avx2*.cpp)
  file(GLOB neon CONFIGURE_DEPENDS ${kernels_dir}/*_neon*.cpp)
  file(GLOB neon_dotprod CONFIGURE_DEPENDS ${kernels_dir}/*_neon_dotprod*.cpp)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
    set_source_files_properties(${avx512} PROPERTIES COMPILE_OPTIONS
      "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512bf16;-mavx512vnni;-mfma;-mf16c")
    set_source_files_properties(${avx2} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    set(foreign ${neon})
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    set_source_files_properties(${neon_dotprod} PROPERTIES COMPILE_OPTIONS "-march=armv8.2-a+dotprod")
    # FMA is baseline here and GCC fuses a * b + c on its own; the scalar code (the twins, the activation
    # quantizer's rounding by adding 1.5 * 2^23) is meant with separate roundings, as x86-64 computes it.
    target_compile_options(${target} PRIVATE -ffp-contract=off)
    set(foreign ${avx512} ${avx2})
  else()
    set(foreign ${avx512} ${avx2} ${neon})
  endif()
  if(foreign)
    get_target_property(sources ${target} SOURCES)
    list(REMOVE_ITEM sources ${foreign})
    set_property(TARGET ${target} PROPERTY SOURCES ${sources})
  endif()
endfunction()
