#pragma once

// HDF5 plumbing shared by the session writer and reader. Only core/session/*.cpp include this: HDF5 types stay out
// of the public session API.
#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>

namespace mla::h5 {

// An owned HDF5 identifier, closed with the matching H5?close on destruction. Move-only.
class Handle {
public:
    using Closer = herr_t (*)(hid_t);

    Handle() = default;
    Handle(hid_t id, Closer close) : m_id(id), m_close(close) {}
    ~Handle() { reset(); }
    Handle(Handle&& other) noexcept : m_id(std::exchange(other.m_id, H5I_INVALID_HID)), m_close(other.m_close) {}
    Handle& operator=(Handle&& other) noexcept
    {
        if (this != &other) {
            reset();
            m_id = std::exchange(other.m_id, H5I_INVALID_HID);
            m_close = other.m_close;
        }
        return *this;
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;

    hid_t id() const { return m_id; }
    bool valid() const { return m_id >= 0; }
    explicit operator bool() const { return valid(); }

    // Closes now and reports whether HDF5 accepted the close (a file close is where buffered data reaches disk).
    bool close()
    {
        if (m_id < 0)
            return true;
        const herr_t status = m_close(m_id);
        m_id = H5I_INVALID_HID;
        return status >= 0;
    }
    void reset() { close(); }

private:
    hid_t m_id = H5I_INVALID_HID;
    Closer m_close = nullptr;
};

inline Handle file(hid_t id) { return {id, &H5Fclose}; }
inline Handle group(hid_t id) { return {id, &H5Gclose}; }
inline Handle dataset(hid_t id) { return {id, &H5Dclose}; }
inline Handle attribute(hid_t id) { return {id, &H5Aclose}; }
inline Handle dataspace(hid_t id) { return {id, &H5Sclose}; }
inline Handle datatype(hid_t id) { return {id, &H5Tclose}; }
inline Handle plist(hid_t id) { return {id, &H5Pclose}; }

// Serialises our use of the library (the GUI may save from a worker while the CLI-style code reads elsewhere) and
// turns off HDF5's automatic printing of its error stack for the calling thread: every failure becomes an mla::Error
// with a one-line message instead of a page on stderr. Hold one for the whole of a save or a load.
class LibraryGuard {
public:
    LibraryGuard();
    ~LibraryGuard();
    LibraryGuard(const LibraryGuard&) = delete;
    LibraryGuard& operator=(const LibraryGuard&) = delete;

private:
    std::unique_lock<std::recursive_mutex> m_lock;
};

// The most specific message on the calling thread's HDF5 error stack (e.g. "truncated file: eof = ..."), or a
// generic text when the stack is empty. Clears the stack.
std::string takeErrorMessage();

// The file access list both sides use: the HDF5 1.10 file format, pinned so that a newer library writes the same
// bytes (checksummed object headers, so corruption is detected rather than parsed; h5py with HDF5 >= 1.10 reads it),
// and file locking that is skipped where the file system does not support it.
Handle fileAccessList();

} // namespace mla::h5
