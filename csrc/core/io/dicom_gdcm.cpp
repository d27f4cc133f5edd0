/* dicom_gdcm.cpp - the one C++ file of the core: fs_dicom_decode (io/dicom.h) through GDCM.
 *
 * GDCM parses the data set (any of the uncompressed transfer syntaxes, deflate) and decodes the
 * pixel data (RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000) into native-endian
 * stored values; this file reads the attributes fewshot reports, checks what GDCM read against
 * the file (truncation, missing pixel data, transfer syntax, sizes) and converts to float32
 * with the modality rescale applied. Nothing throws past extern "C": every GDCM call runs
 * inside one try block, and failures come back as a message in err.
 */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmImage.h>
#include <gdcmReader.h>
#include <gdcmSwapCode.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmStringFilter.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>
#include <gdcmUIDs.h>

#include "io/dicom.h"

namespace {

const int64_t MAX_BYTES = (int64_t)1 << 31; /* decoded pixel bytes we accept */

struct Failure {
    std::string msg;
};

[[noreturn]] void fail(const std::string &msg) { throw Failure{msg}; }

std::string trim(std::string s)
{
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0'))
        s.pop_back();
    size_t i = 0;
    while (i < s.size() && s[i] == ' ')
        i++;
    return s.substr(i);
}

/* A reader of attributes in one data set (top level or a sequence item), as text. */
struct Attrs {
    gdcm::StringFilter &sf;
    const gdcm::DataSet &ds;

    bool has(uint16_t g, uint16_t e) const
    {
        gdcm::Tag t(g, e);
        return ds.FindDataElement(t) && !ds.GetDataElement(t).IsEmpty();
    }
    std::string str(uint16_t g, uint16_t e) const
    {
        gdcm::Tag t(g, e);
        if (!ds.FindDataElement(t))
            return "";
        const gdcm::DataElement &de = ds.GetDataElement(t);
        if (de.IsEmpty() || !de.GetByteValue())
            return "";
        return trim(sf.ToString(de));
    }
    /* The numbers of a backslash-separated value (DS, IS, US, FD, ...), at most max. */
    std::vector<double> nums(uint16_t g, uint16_t e, size_t max = 64) const
    {
        std::vector<double> v;
        std::string s = str(g, e);
        size_t i = 0;
        while (i < s.size() && v.size() < max) {
            size_t j = s.find('\\', i);
            if (j == std::string::npos)
                j = s.size();
            std::string part = s.substr(i, j - i);
            char *end = nullptr;
            double d = std::strtod(part.c_str(), &end);
            if (end != part.c_str() && std::isfinite(d))
                v.push_back(d);
            else
                return std::vector<double>(); /* a value that is not a number: treat as absent */
            i = j + 1;
        }
        return v;
    }
    bool num(uint16_t g, uint16_t e, double *out) const
    {
        std::vector<double> v = nums(g, e, 1);
        if (v.empty())
            return false;
        *out = v[0];
        return true;
    }
    /* The first item of a sequence, or NULL. */
    const gdcm::SequenceOfItems *seq(uint16_t g, uint16_t e) const
    {
        gdcm::Tag t(g, e);
        if (!ds.FindDataElement(t))
            return nullptr;
        gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds.GetDataElement(t).GetValueAsSQ();
        return sq ? sq.GetPointer() : nullptr;
    }
};

void copy_str(char *dst, const std::string &s)
{
    std::snprintf(dst, FS_DICOM_STR, "%s", s.c_str());
}

/* Keeps the sequence alive while the items are read (GetValueAsSQ may make a new one). */
struct Seq {
    gdcm::SmartPointer<gdcm::SequenceOfItems> sq;
    Seq(const gdcm::DataSet &ds, uint16_t g, uint16_t e)
    {
        gdcm::Tag t(g, e);
        if (ds.FindDataElement(t))
            sq = ds.GetDataElement(t).GetValueAsSQ();
    }
    size_t size() const { return sq ? sq->GetNumberOfItems() : 0; }
    const gdcm::DataSet &item(size_t i) const { return sq->GetItem(i + 1).GetNestedDataSet(); }
};

void read_attributes(gdcm::StringFilter &sf, const gdcm::File &file, fs_dicom_info *info)
{
    const gdcm::DataSet &ds = file.GetDataSet();
    Attrs a{sf, ds};
    copy_str(info->modality, a.str(0x0008, 0x0060));
    copy_str(info->sop_class_uid, a.str(0x0008, 0x0016));
    copy_str(info->image_type, a.str(0x0008, 0x0008));
    copy_str(info->photometric, a.str(0x0028, 0x0004));
    copy_str(info->patient_id, a.str(0x0010, 0x0020));
    copy_str(info->study_uid, a.str(0x0020, 0x000D));
    copy_str(info->series_uid, a.str(0x0020, 0x000E));
    copy_str(info->sop_instance_uid, a.str(0x0008, 0x0018));
    copy_str(info->frame_of_reference_uid, a.str(0x0020, 0x0052));
    copy_str(info->series_description, a.str(0x0008, 0x103E));
    copy_str(info->units, a.str(0x0054, 0x1001));
    double d;
    info->series_number = a.num(0x0020, 0x0011, &d) ? (int)d : 0;
    info->instance_number = a.num(0x0020, 0x0013, &d) ? (int)d : 0;
    info->rescale_slope = a.num(0x0028, 0x1053, &d) ? d : 1.0;
    info->rescale_intercept = a.num(0x0028, 0x1052, &d) ? d : 0.0;
    info->has_dose_grid_scaling = a.num(0x3004, 0x000E, &info->dose_grid_scaling);
    std::vector<double> ps = a.nums(0x0028, 0x0030, 2);
    if (ps.size() != 2)
        ps = a.nums(0x0018, 0x1164, 2);
    if (ps.size() == 2) {
        info->has_pixel_spacing = 1;
        info->pixel_spacing[0] = ps[0];
        info->pixel_spacing[1] = ps[1];
    }
    info->has_slice_thickness = a.num(0x0018, 0x0050, &info->slice_thickness);
    info->has_slice_spacing = a.num(0x0018, 0x0088, &info->slice_spacing);
    if (!info->has_slice_spacing) {
        std::vector<double> off = a.nums(0x3004, 0x000C, 2);
        if (off.size() == 2) {
            info->has_slice_spacing = 1;
            info->slice_spacing = std::fabs(off[1] - off[0]);
        }
    }
    std::vector<double> pos = a.nums(0x0020, 0x0032, 3), ori = a.nums(0x0020, 0x0037, 6);
    if (pos.size() == 3) {
        info->has_position = 1;
        std::copy(pos.begin(), pos.end(), info->position);
    }
    if (ori.size() == 6) {
        info->has_orientation = 1;
        std::copy(ori.begin(), ori.end(), info->orientation);
    }
    /* NM: energy windows, detectors, radiopharmaceutical */
    Seq win(ds, 0x0054, 0x0012);
    for (size_t i = 0; i < win.size() && i < FS_DICOM_MAX_WINDOWS; i++) {
        Attrs w{sf, win.item(i)};
        fs_dicom_energy_window *ew = &info->energy_windows[info->n_energy_windows++];
        copy_str(ew->name, w.str(0x0054, 0x0018));
        Seq range(win.item(i), 0x0054, 0x0013);
        if (range.size() > 0) {
            Attrs r{sf, range.item(0)};
            r.num(0x0054, 0x0014, &ew->lower_kev);
            r.num(0x0054, 0x0015, &ew->upper_kev);
        }
    }
    Seq det(ds, 0x0054, 0x0022);
    int ndet = 0;
    for (size_t i = 0; i < det.size() && i < FS_DICOM_MAX_DETECTORS; i++) {
        Attrs t{sf, det.item(i)};
        fs_dicom_detector *dd = &info->detectors[ndet++];
        copy_str(dd->collimator, t.str(0x0018, 0x1180));
        copy_str(dd->collimator_type, t.str(0x0018, 0x1181));
        t.num(0x0018, 0x1142, &dd->radial_position_mm);
        std::vector<double> p = t.nums(0x0020, 0x0032, 3), o = t.nums(0x0020, 0x0037, 6);
        if (p.size() == 3) {
            dd->has_position = 1;
            std::copy(p.begin(), p.end(), dd->position);
        }
        if (o.size() == 6) {
            dd->has_orientation = 1;
            std::copy(o.begin(), o.end(), dd->orientation);
        }
    }
    info->n_detectors = a.num(0x0054, 0x0021, &d) ? (int)d : ndet;
    if (ndet > 0 && !info->has_position && info->detectors[0].has_position) {
        info->has_position = 1;
        std::memcpy(info->position, info->detectors[0].position, sizeof info->position);
    }
    if (ndet > 0 && !info->has_orientation && info->detectors[0].has_orientation) {
        info->has_orientation = 1;
        std::memcpy(info->orientation, info->detectors[0].orientation, sizeof info->orientation);
    }
    info->number_of_slices = a.num(0x0054, 0x0081, &d) ? (int)d : 0;
    Seq rp(ds, 0x0054, 0x0016);
    if (rp.size() > 0)
        copy_str(info->radiopharmaceutical, Attrs{sf, rp.item(0)}.str(0x0018, 0x0031));
}

/* The transfer syntaxes GDCM decodes here; the others are refused by name. */
bool supported(gdcm::TransferSyntax::TSType ts)
{
    switch (ts) {
    case gdcm::TransferSyntax::ImplicitVRLittleEndian:
    case gdcm::TransferSyntax::ExplicitVRLittleEndian:
    case gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian:
    case gdcm::TransferSyntax::ExplicitVRBigEndian:
    case gdcm::TransferSyntax::RLELossless:
    case gdcm::TransferSyntax::JPEGBaselineProcess1:
    case gdcm::TransferSyntax::JPEGExtendedProcess2_4:
    case gdcm::TransferSyntax::JPEGLosslessProcess14:
    case gdcm::TransferSyntax::JPEGLosslessProcess14_1:
    case gdcm::TransferSyntax::JPEGLSLossless:
    case gdcm::TransferSyntax::JPEGLSNearLossless:
    case gdcm::TransferSyntax::JPEG2000Lossless:
    case gdcm::TransferSyntax::JPEG2000:
        return true;
    default:
        return false;
    }
}

std::string uid_name(const std::string &uid)
{
    gdcm::UIDs u;
    if (u.SetFromUID(uid.c_str()) && u.GetName())
        return u.GetName();
    return "unknown";
}

/* The transfer syntax UID as the meta header gives it ("" when there is none). */
std::string meta_ts_uid(const gdcm::File &file)
{
    const gdcm::FileMetaInformation &h = file.GetHeader();
    gdcm::Tag t(0x0002, 0x0010);
    if (!h.FindDataElement(t))
        return "";
    const gdcm::ByteValue *bv = h.GetDataElement(t).GetByteValue();
    return bv ? trim(std::string(bv->GetPointer(), bv->GetLength())) : "";
}

/* A native-endian sample; halves_swapped: a 32-bit sample of a big endian file, which GDCM's
 * raw codec byte-swaps as two 16-bit words (OW), so its halves come out in the wrong order. */
int64_t load_sample(const unsigned char *p, int bytes, bool halves_swapped)
{
    switch (bytes) {
    case 1: return p[0];
    case 2: { uint16_t v; std::memcpy(&v, p, 2); return v; }
    default: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        return halves_swapped ? (v >> 16 | v << 16) : v;
    }
    }
}

/* A stored sample to its value: masked to bits_stored, sign-extended when signed. */
double sample_value(int64_t raw, int bits_stored, int is_signed)
{
    uint64_t mask = bits_stored >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << bits_stored) - 1);
    uint64_t u = (uint64_t)raw & mask;
    if (is_signed && bits_stored > 0 && (u >> (bits_stored - 1)) & 1)
        return (double)(int64_t)(u | ~mask);
    return (double)u;
}

/* The image GDCM decodes, built from the attributes read here (not by gdcm::ImageReader,
 * whose geometry helpers assert on some valid files, e.g. an RT Dose without Number of Frames). */
int decode(const unsigned char *buf, size_t len, const int64_t *frames, int nframes,
           fs_dicom_info *info, fs_dicom_alloc_fn alloc, void *ctx)
{
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
    gdcm::Trace::SetDebug(false);
    if (len < 8)
        fail("not a DICOM file (" + std::to_string(len) + " bytes)");
    std::string bytes(reinterpret_cast<const char *>(buf), len);
    std::istringstream is(bytes);
    gdcm::Reader reader;
    reader.SetStream(is);
    bool read_ok = reader.Read();
    const gdcm::File &file = reader.GetFile();
    const gdcm::DataSet &ds = file.GetDataSet();
    gdcm::StringFilter sf;
    sf.SetFile(file);
    bool dicm = len >= 132 && std::memcmp(buf + 128, "DICM", 4) == 0;
    if (ds.IsEmpty())
        fail(dicm ? "malformed: GDCM read no data set after the DICM preamble"
                  : "not a DICOM file (no DICM preamble, and GDCM found no data set)");
    read_attributes(sf, file, info);
    std::string uid = meta_ts_uid(file);
    gdcm::TransferSyntax ts = file.GetHeader().GetDataSetTransferSyntax();
    if (uid.empty() && ts.IsValid())
        uid = ts.GetString() ? trim(ts.GetString()) : "";
    copy_str(info->transfer_syntax_uid, uid);
    copy_str(info->transfer_syntax, uid_name(uid));
    gdcm::TransferSyntax::TSType tst = gdcm::TransferSyntax::GetTSType(uid.c_str());
    if (!uid.empty() && !supported(tst))
        fail("unsupported transfer syntax " + uid + " (" + uid_name(uid) +
             "); read: implicit/explicit VR little endian, explicit VR big endian, deflate, RLE, "
             "JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000");
    const gdcm::Tag pixel_tag(0x7fe0, 0x0010);
    if (!ds.FindDataElement(pixel_tag)) {
        if (!read_ok)
            fail("truncated or malformed: GDCM stopped before the pixel data (7FE0,0010)");
        std::string what = info->modality[0] ? std::string(info->modality) + " object" : "object";
        fail("no pixel data (7FE0,0010) element: a DICOM " + what + " without an image, or a " +
             "file cut short at an element boundary (SOP class " +
             std::string(info->sop_class_uid) + ", " + std::to_string(len) + " bytes)");
    }
    const gdcm::DataElement &pde = ds.GetDataElement(pixel_tag);
    if (!read_ok)
        fail("truncated or malformed: GDCM could not read the data set to its end");
    /* GDCM reads a pixel value cut short by the end of the file without complaint (the rest
     * left zero): where the value of a native (not encapsulated) Pixel Data starts comes from
     * a second pass that stops there, and its declared length must fit in the file. */
    if (!pde.GetSequenceOfFragments() && !pde.GetVL().IsUndefined() &&
        tst != gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian) {
        std::istringstream is2(bytes);
        gdcm::Reader upto;
        upto.SetStream(is2);
        std::set<gdcm::Tag> skip;
        skip.insert(pixel_tag);
        upto.ReadUpToTag(pixel_tag, skip);
        std::streamoff at = is2.tellg();
        uint64_t vl = (uint32_t)pde.GetVL();
        if (at < 0 || (uint64_t)at + vl > (uint64_t)len)
            fail("truncated: the pixel data element (7FE0,0010) declares " + std::to_string(vl) +
                 " bytes but the file ends " +
                 std::to_string(at < 0 ? 0 : (int64_t)len - (int64_t)at) + " bytes after its start");
    }
    Attrs a{sf, ds};
    double d;
    info->rows = a.num(0x0028, 0x0010, &d) ? (int64_t)d : 0;
    info->columns = a.num(0x0028, 0x0011, &d) ? (int64_t)d : 0;
    info->frames = a.num(0x0028, 0x0008, &d) ? (int64_t)d : 1;
    info->samples_per_pixel = a.num(0x0028, 0x0002, &d) ? (int)d : 1;
    info->bits_allocated = a.num(0x0028, 0x0100, &d) ? (int)d : 0;
    info->bits_stored = a.num(0x0028, 0x0101, &d) ? (int)d : info->bits_allocated;
    info->pixel_representation = a.num(0x0028, 0x0103, &d) ? (int)d : 0;
    info->planar_configuration = a.num(0x0028, 0x0006, &d) ? (int)d : 0;
    if (info->rows <= 0 || info->columns <= 0 || info->frames <= 0 || info->rows > 65535 ||
        info->columns > 65535 || info->frames > (1 << 24))
        fail("bad image size (rows " + std::to_string(info->rows) + ", columns " +
             std::to_string(info->columns) + ", frames " + std::to_string(info->frames) + ")");
    int spp = info->samples_per_pixel;
    if (spp != 1 && spp != 3)
        fail("samples per pixel " + std::to_string(spp) + " (read: 1 or 3)");
    int ba = info->bits_allocated;
    if (ba != 8 && ba != 16 && ba != 32)
        fail("bits allocated " + std::to_string(ba) + " (read: 8, 16 or 32)");
    if (info->bits_stored <= 0 || info->bits_stored > ba)
        fail("bits stored " + std::to_string(info->bits_stored) + " with bits allocated " +
             std::to_string(ba));
    if (info->pixel_representation != 0 && info->pixel_representation != 1)
        fail("pixel representation " + std::to_string(info->pixel_representation) + " (0 or 1)");
    std::string pi = info->photometric;
    if (pi.empty())
        pi = spp == 1 ? "MONOCHROME2" : "RGB";
    if (spp == 1 && pi != "MONOCHROME1" && pi != "MONOCHROME2")
        fail("photometric interpretation " + pi + " with 1 sample (read: MONOCHROME1/2; "
             "PALETTE COLOR is not read, convert to RGB first)");
    int ybr = pi == "YBR_FULL" || pi == "YBR_FULL_422";
    if (spp == 3 && pi != "RGB" && !ybr)
        fail("photometric interpretation " + pi + " with 3 samples (read: RGB, YBR_FULL, YBR_FULL_422)");
    if (pi == "YBR_FULL_422" && !ts.IsEncapsulated())
        fail("uncompressed YBR_FULL_422 (subsampled chroma) is not read");
    /* GDCM 3.0's RLE decoder puts the byte segments of 16/32-bit colour samples out of order
     * (SC_rgb_rle_16bit.dcm of pydicom's test set against pydicom): refused, not misread */
    if (tst == gdcm::TransferSyntax::RLELossless && spp == 3 && ba > 8)
        fail("RLE with 3 samples of " + std::to_string(ba) + " bits is not read (GDCM 3.0 "
             "decodes their byte segments out of order); 8-bit colour and any gray RLE are read");
    if (info->planar_configuration != 0 && info->planar_configuration != 1)
        fail("planar configuration " + std::to_string(info->planar_configuration) + " (0 or 1)");
    if (!(info->rescale_slope != 0.0))
        fail("rescale slope 0");
    for (int i = 0; i < nframes; i++)
        if (frames[i] < 0 || frames[i] >= info->frames)
            fail("frame " + std::to_string(frames[i] + 1) + " out of range: the file has " +
                 std::to_string(info->frames) + " frame(s)");
    if (!alloc)
        return 0;
    gdcm::Image img;
    img.SetNumberOfDimensions(info->frames > 1 ? 3 : 2);
    img.SetDimension(0, (unsigned)info->columns);
    img.SetDimension(1, (unsigned)info->rows);
    if (info->frames > 1)
        img.SetDimension(2, (unsigned)info->frames);
    int hb = a.num(0x0028, 0x0102, &d) ? (int)d : info->bits_stored - 1;
    if (hb != info->bits_stored - 1)
        hb = info->bits_stored - 1; /* the samples are masked below, as pydicom does */
    img.SetPixelFormat(gdcm::PixelFormat((unsigned short)spp, (unsigned short)ba,
                                         (unsigned short)info->bits_stored, (unsigned short)hb,
                                         (unsigned short)info->pixel_representation));
    img.SetPhotometricInterpretation(gdcm::PhotometricInterpretation::GetPIType(pi.c_str()));
    img.SetPlanarConfiguration((unsigned)info->planar_configuration);
    img.SetTransferSyntax(ts);
    img.SetNeedByteSwap(false); /* the raw codec swaps big endian samples itself */
    img.SetDataElement(pde);
    int bps = ba / 8;
    int64_t plane = info->rows * info->columns;
    if (plane > MAX_BYTES / (int64_t)spp / bps || plane * spp * bps > MAX_BYTES / info->frames)
        fail("image too large (" + std::to_string(info->frames) + " x " +
             std::to_string(info->rows) + " x " + std::to_string(info->columns) + " x " +
             std::to_string(spp) + " samples of " + std::to_string(bps) + " bytes)");
    int64_t frame_bytes = plane * spp * bps;
    int64_t need = frame_bytes * info->frames;
    if (plane * spp * info->frames > ((int64_t)1 << 30))
        fail("image too large: " + std::to_string(plane * spp * info->frames) +
             " samples (at most 2^30, 4 GB of float32)");
    /* Compressed data: a header may claim any size for a few bytes of fragments, and GDCM
     * allocates the decoded size before decoding. Real images compress far less than 2000:1
     * (a constant image in RLE: 64:1), so more than that (beyond 64 MB) is refused. */
    if (pde.GetSequenceOfFragments() &&
        need > std::max<int64_t>((int64_t)64 << 20, (int64_t)2000 * (int64_t)len))
        fail("pixel data of " + std::to_string(len) + " bytes cannot hold " +
             std::to_string(info->frames) + " frame(s) of " + std::to_string(info->rows) + " x " +
             std::to_string(info->columns) + " (" + std::to_string(need) + " bytes decoded)");
    unsigned long have = img.GetBufferLength();
    if ((int64_t)have < need)
        fail("pixel data holds " + std::to_string(have) + " bytes where " +
             std::to_string(info->frames) + " frame(s) of " + std::to_string(info->rows) + " x " +
             std::to_string(info->columns) + " need " + std::to_string(need));
    if (!pde.GetSequenceOfFragments() && pde.GetByteValue() &&
        (int64_t)pde.GetByteValue()->GetLength() < need)
        fail("truncated: the pixel data element has " +
             std::to_string(pde.GetByteValue()->GetLength()) + " bytes where " +
             std::to_string(need) + " are needed");
    std::vector<char> raw(have);
    if (!img.GetBuffer(raw.data()))
        fail("GDCM could not decode the pixel data (" + std::string(info->transfer_syntax) + ")");
    /* what the decoder gave: JPEG codecs return YBR as RGB and set the interpretation */
    std::string out_pi = trim(img.GetPhotometricInterpretation().GetString()
                                  ? img.GetPhotometricInterpretation().GetString() : "");
    ybr = spp == 3 && (out_pi == "YBR_FULL" || out_pi == "YBR_FULL_422") && !ts.IsEncapsulated();
    int64_t nout = nframes > 0 ? nframes : info->frames;
    float *out = alloc(ctx, nout, spp, info->rows, info->columns);
    if (!out)
        fail("out of memory for " + std::to_string(nout) + " frame(s) of " +
             std::to_string(info->rows) + " x " + std::to_string(info->columns));
    int is_signed = info->pixel_representation == 1;
    double slope = info->rescale_slope, icpt = info->rescale_intercept;
    int planar = info->planar_configuration == 1;
    bool halves = ts.GetSwapCode() == gdcm::SwapCode::BigEndian && !ts.IsEncapsulated();
    const unsigned char *src = reinterpret_cast<const unsigned char *>(raw.data());
    for (int64_t f = 0; f < nout; f++) {
        int64_t sf_ = nframes > 0 ? frames[f] : f;
        const unsigned char *fp = src + sf_ * frame_bytes;
        float *dst = out + f * spp * plane;
        for (int c = 0; c < spp; c++)
            for (int64_t i = 0; i < plane; i++) {
                int64_t at = planar ? (c * plane + i) : (i * spp + c);
                double v = sample_value(load_sample(fp + at * bps, bps, halves), info->bits_stored,
                                        is_signed);
                dst[c * plane + i] = (float)(v * slope + icpt);
            }
        if (ybr) { /* YBR_FULL to RGB (PS3.3 C.7.6.3.1.2), as pydicom's convert_color_space */
            for (int64_t i = 0; i < plane; i++) {
                double y = dst[i], cb = dst[plane + i] - 128.0, cr = dst[2 * plane + i] - 128.0;
                double r = y + 1.402 * cr, g = y - 0.344136 * cb - 0.714136 * cr,
                       b = y + 1.772 * cb;
                double mx = (double)((1 << info->bits_stored) - 1);
                dst[i] = (float)std::fmin(std::fmax(std::round(r), 0.0), mx);
                dst[plane + i] = (float)std::fmin(std::fmax(std::round(g), 0.0), mx);
                dst[2 * plane + i] = (float)std::fmin(std::fmax(std::round(b), 0.0), mx);
            }
        }
    }
    return 0;
}

} /* namespace */

extern "C" int fs_dicom_decode(const unsigned char *buf, size_t len, const int64_t *frames,
                               int nframes, fs_dicom_info *info, fs_dicom_alloc_fn alloc,
                               void *ctx, char *err, size_t errlen)
{
    std::memset(info, 0, sizeof *info);
    info->rescale_slope = 1.0;
    try {
        return decode(buf, len, frames, nframes, info, alloc, ctx);
    } catch (const Failure &f) {
        std::snprintf(err, errlen, "%s", f.msg.c_str());
    } catch (const std::bad_alloc &) {
        std::snprintf(err, errlen, "out of memory");
    } catch (const std::exception &e) {
        std::snprintf(err, errlen, "GDCM failed: %s", e.what());
    } catch (...) {
        std::snprintf(err, errlen, "GDCM failed (unknown exception)");
    }
    return -1;
}
